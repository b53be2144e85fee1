"""Entry point of Hearth's Lambda runtime for python3.x: see hearth_bootstrap.

This script stays tiny because Python compiles the script it runs on every
start; the module it imports can be loaded from precompiled bytecode.
"""

import sys

sys.dont_write_bytecode = True  # /var/task is read-only; never write .pyc

import hearth_bootstrap  # noqa: E402 (found next to this script: sys.path[0])

hearth_bootstrap.main()
