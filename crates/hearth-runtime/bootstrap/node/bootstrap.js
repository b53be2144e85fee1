// Hearth's Lambda runtime for nodejs* functions (Node 18+, built-ins only).
//
// Started as `node /var/runtime/node/bootstrap.js` with the Lambda
// environment (AWS_LAMBDA_RUNTIME_API, _HANDLER, LAMBDA_TASK_ROOT, ...). It
// loads the handler, then serves invocations through the Runtime API, one at
// a time. Handler resolution, error bodies (`trace`, not `stackTrace`) and log
// lines follow AWS's Node.js runtime interface client.
//
// Hearth's own Runtime API extensions (ADR 0018), both optional:
// - HEARTH_RUNTIME_API_FD: a connected Unix socket to the same Runtime API,
//   inherited from the sandbox. It is taken out of the environment before
//   any handler code runs and used as the client's first connection; if it
//   fails, the client falls back to TCP for good. (Node cannot mark it
//   close-on-exec: a handler's child process inherits it, which gives it
//   nothing AWS_LAMBDA_RUNTIME_API does not.)
// - `Hearth-Then-Next: 1` on an answer: the reply to an accepted answer is
//   the next invocation (one exchange per invocation); a 202 means the
//   Runtime API did not do that, and the runtime asks `next` itself.
//
// Runtime-warm ("await assignment") mode, when started with
// HEARTH_AWAIT_ASSIGNMENT=1 and a minimal environment: the runtime loads what
// it needs, then long-polls Hearth's assignment endpoint
// (GET /2018-06-01/runtime/hearth/assignment, answered with
// {"handler": ..., "env": {...}}); once assigned it replaces process.env with
// exactly the assigned environment, changes to the task root, recomputes the
// global module paths from NODE_PATH and continues as a normal start.
//
// Differences from AWS, on purpose:
// - `context.callbackWaitsForEmptyEventLoop` is accepted but ignored: a
//   callback's result is posted at once, without waiting for the event loop
//   to drain. (A non-async handler that neither calls back nor returns a
//   promise still gets AWS's behaviour: `null` once the loop is empty.)
// - Multi-line log messages keep their newlines (AWS's stdout logger turns
//   them into '\r'; its telemetry logger, which CloudWatch shows, keeps them).
// - Response streaming (`awslambda.streamifyResponse`) is not supported.

'use strict';

const http = require('http');
const net = require('net');
const fs = require('fs');
const path = require('path');
const util = require('util');

const API_BASE = '/2018-06-01/runtime/';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const THEN_NEXT_HEADER = 'Hearth-Then-Next';

// ---------------------------------------------------------------- errors

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
class NodeJsExit extends Error {
  constructor() {
    super(
      'The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly caused by a Promise that was never settled. For more information, see https://nodejs.org/docs/latest/api/process.html#exit-codes',
    );
  }
}
for (const cls of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  UnhandledPromiseRejection,
  NodeJsExit,
]) {
  cls.prototype.name = `Runtime.${cls.name}`;
}

function isErrorLike(e) {
  return (
    e &&
    typeof e.name === 'string' &&
    typeof e.message === 'string' &&
    typeof e.stack === 'string'
  );
}

/** The body posted to the Runtime API for an error. */
function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return {
      errorType: typeof error,
      errorMessage: String(error),
      trace: [],
    };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

/** An error as AWS logs it: a tab, then its JSON with name/message/stack. */
function toFormatted(error) {
  const withProps = (_k, v) => {
    if (v instanceof Error) {
      const out = Object.assign(
        { errorType: v.name, errorMessage: v.message, code: v.code },
        v,
      );
      if (typeof v.stack === 'string') out.stack = v.stack.split('\n');
      return out;
    }
    return v;
  };
  try {
    return '\t' + JSON.stringify(error, withProps);
  } catch (_) {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

function intoError(err) {
  return err instanceof Error ? err : new Error(err);
}

// ---------------------------------------------------------------- logging

let currentRequestId; // undefined during init, as on AWS

function patchConsole() {
  const logAt = (level) =>
    function (message, ...params) {
      const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(message, ...params)}\n`;
      process.stdout.write(line);
    };
  console.trace = logAt('TRACE');
  console.debug = logAt('DEBUG');
  console.info = logAt('INFO');
  console.log = console.info;
  console.warn = logAt('WARN');
  console.error = logAt('ERROR');
  console.fatal = logAt('FATAL');
}

function logError(what, err) {
  console.error(what, toFormatted(intoError(err)));
}

// ---------------------------------------------------------------- client

const apiAddress = process.env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001';
const colon = apiAddress.lastIndexOf(':');
const apiHost = apiAddress.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
const apiPort = parseInt(apiAddress.slice(colon + 1), 10);
// The sandbox's channel to the Runtime API, if it gave one (see the top).
let channelFd = (() => {
  const v = process.env.HEARTH_RUNTIME_API_FD;
  delete process.env.HEARTH_RUNTIME_API_FD;
  const n = v === undefined ? NaN : Number(v);
  return Number.isInteger(n) && n >= 0 ? n : null;
})();
// One keep-alive socket: free sockets are unref'd, so an idle one does not
// keep the event loop alive (AWS's null-response rule relies on that).
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
agent.createConnection = function createConnection(options, callback) {
  if (channelFd !== null) {
    const fd = channelFd;
    channelFd = null;
    try {
      const socket = new net.Socket({ fd, readable: true, writable: true });
      socket.hearthChannel = true;
      return socket;
    } catch (_) {
      // Not a usable socket: TCP, as without one.
    }
  }
  return http.Agent.prototype.createConnection.call(this, options, callback);
};

/** The Runtime API, as `request` reaches it by default. */
const API = { host: apiHost, port: apiPort, agent };

function request(method, urlPath, body, headers, via = API, retried = false) {
  return new Promise((resolve, reject) => {
    const hdrs = Object.assign({}, headers);
    if (body !== undefined) {
      hdrs['Content-Type'] = 'application/json';
      hdrs['Content-Length'] = body.length;
    }
    let onChannel = false;
    const req = http.request(
      { host: via.host, port: via.port, method, path: urlPath, agent: via.agent, headers: hdrs },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('socket', (socket) => {
      onChannel = socket.hearthChannel === true;
    });
    req.on('error', (e) => {
      // A request that failed on the channel is tried once more, over TCP.
      if (onChannel && !retried) {
        request(method, urlPath, body, headers, via, true).then(resolve, reject);
      } else {
        reject(e);
      }
    });
    req.end(body);
  });
}

async function post(urlPath, bodyString, headers) {
  const res = await request('POST', urlPath, Buffer.from(bodyString, 'utf8'), headers);
  // 200: the next invocation, in reply to an answer sent with THEN_NEXT_HEADER.
  if (res.status !== 202 && res.status !== 200) {
    // 413 (response too large) is already reported to the invoker.
    process.stderr.write(
      `Runtime API refused ${urlPath}: ${res.status} ${res.body.toString('utf8', 0, 200)}\n`,
    );
  }
  return res;
}

function serialize(value) {
  const s = JSON.stringify(value === undefined ? null : value);
  return s === undefined ? 'null' : s;
}

// ---------------------------------------------------------------- handler

function moduleRootAndHandler(full) {
  const handlerString = path.basename(full);
  return [full.substring(0, full.indexOf(handlerString)), handlerString];
}

function splitHandlerString(handler) {
  const match = handler.match(/^([^.]*)\.(.*)$/);
  if (!match || match.length !== 3) throw new MalformedHandlerName('Bad handler');
  return [match[1], match[2]];
}

function hasPackageJsonTypeModule(folder) {
  if (folder.endsWith('/node_modules')) return false;
  const pj = path.join(folder, 'package.json');
  if (fs.existsSync(pj)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(pj, 'utf8'));
      return !!pkg && pkg.type === 'module';
    } catch (e) {
      console.warn(`${pj} cannot be read, it will be ignored for ES module detection purposes.`, e);
      return false;
    }
  }
  if (folder === '/' || folder === path.dirname(folder)) return false;
  return hasPackageJsonTypeModule(path.dirname(folder));
}

function tryRequire(file) {
  return fs.existsSync(file) ? require(file) : undefined;
}

async function tryImport(file) {
  if (!fs.existsSync(file)) return undefined;
  const { pathToFileURL } = require('url');
  return await import(pathToFileURL(file).href);
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  const plain = tryRequire(base);
  if (plain) return plain;
  const esmJs = hasPackageJsonTypeModule(path.dirname(base));
  if (!esmJs) {
    const js = tryRequire(base + '.js');
    if (js) return js;
  }
  const loaded =
    (esmJs && (await tryImport(base + '.js'))) ||
    (await tryImport(base + '.mjs')) ||
    tryRequire(base + '.cjs');
  if (loaded) return loaded;
  // Last, Node's own resolution (node_modules, NODE_PATH) from the task root.
  return require(require.resolve(moduleName, { paths: [appRoot, moduleRoot] }));
}

async function loadHandler(appRoot, full) {
  if (full.includes('..')) {
    throw new MalformedHandlerName(
      `'${full}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const [moduleRoot, moduleAndHandler] = moduleRootAndHandler(full);
  const [moduleName, handlerPath] = splitHandlerString(moduleAndHandler);
  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && e.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(e);
    throw e;
  }
  const fn = handlerPath.split('.').reduce((o, k) => o && o[k], app);
  if (!fn) throw new HandlerNotFound(`${full} is undefined or not exported`);
  if (typeof fn !== 'function') throw new HandlerNotFound(`${full} is not a function`);
  return fn;
}

// ---------------------------------------------------------------- loop

let initialised = false;
let current = null; // { id, finish } of the invocation in progress
let onLoopEmpty = null; // what to do if the event loop drains mid-invocation

function parseJsonHeader(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

function buildContext(headers, finish) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  let waitForEmptyEventLoop = true;
  // `finish` ignores every call after the first.
  return {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(v) {
      waitForEmptyEventLoop = v;
    },
    succeed: (result) => finish(null, result),
    fail: (err) => finish(err === undefined || err === null ? 'handled' : err, null),
    done: (err, result) => finish(err, result),
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJsonHeader(headers['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseJsonHeader(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: headers['lambda-runtime-aws-request-id'],
    getRemainingTimeInMillis() {
      return deadline - Date.now();
    },
  };
}

/** Posts an invocation's error; resolves to the Runtime API's reply (the
 * next invocation if it is a 200, see THEN_NEXT_HEADER). */
async function postError(id, err) {
  logError('Invoke Error', err);
  return post(
    `${API_BASE}invocation/${encodeURIComponent(id)}/error`,
    JSON.stringify(toRapidResponse(err)),
    { [ERROR_TYPE_HEADER]: 'Unhandled', [THEN_NEXT_HEADER]: '1' },
  );
}

/** Runs one invocation: `following`, the reply that already carries it, or
 * the one `next` gives. */
async function invokeOnce(handler, following) {
  const res = following || (await request('GET', `${API_BASE}invocation/next`));
  if (res.status !== 200) {
    process.stderr.write(`Runtime API refused next: ${res.status} ${res.body.toString('utf8', 0, 200)}\n`);
    process.exit(1);
  }
  const headers = res.headers;
  const id = headers['lambda-runtime-aws-request-id'];
  currentRequestId = id;
  if (headers['lambda-runtime-trace-id']) {
    process.env._X_AMZN_TRACE_ID = headers['lambda-runtime-trace-id'];
  } else {
    delete process.env._X_AMZN_TRACE_ID;
  }

  let finished = false;
  const finish = (err, result) => {
    if (finished) return;
    finished = true;
    onLoopEmpty = null;
    current = null;
    let answer;
    if (err !== undefined && err !== null) {
      answer = postError(id, err);
    } else {
      let body;
      try {
        body = serialize(result);
      } catch (_) {
        answer = postError(id, new Error('Unable to stringify response body'));
      }
      if (body !== undefined) {
        answer = post(`${API_BASE}invocation/${encodeURIComponent(id)}/response`, body, {
          [THEN_NEXT_HEADER]: '1',
        });
      }
    }
    answer.then(
      (reply) => setImmediate(() => loop(handler, reply.status === 200 ? reply : null)),
      (e) => fatal('Runtime API request failed', e),
    );
  };
  current = { id, finish };

  try {
    const context = buildContext(headers, finish);
    const event = JSON.parse(res.body.toString('utf8'));
    // AWS: a handler that never calls back and returns no promise answers
    // null once the event loop is empty.
    onLoopEmpty = () => finish(null, null);
    const result = handler(event, context, (err, value) => finish(err, value));
    if (result && typeof result.then === 'function') {
      onLoopEmpty = () => finish(new NodeJsExit());
      result.then(
        (value) => finish(null, value),
        (err) => finish(err === undefined || err === null ? 'handled' : err, null),
      );
    }
  } catch (err) {
    finish(err);
  }
}

function loop(handler, following) {
  invokeOnce(handler, following).catch((e) => fatal('Runtime API request failed', e));
}

function fatal(what, e) {
  process.stderr.write(`${what}: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
}

async function postInitError(err) {
  const body = toRapidResponse(err);
  await post(`${API_BASE}init/error`, JSON.stringify(body), {
    [ERROR_TYPE_HEADER]: body.errorType,
  });
}

/** Uncaught errors: fail the invocation in progress (or init), then exit. */
function onFatalError(logAs, err, exitCode) {
  logError(logAs, err);
  let report;
  if (current) {
    const id = current.id;
    current = null;
    onLoopEmpty = null;
    report = post(
      `${API_BASE}invocation/${encodeURIComponent(id)}/error`,
      JSON.stringify(toRapidResponse(err)),
      { [ERROR_TYPE_HEADER]: 'Unhandled' },
    );
  } else if (!initialised) {
    report = postInitError(err);
  } else {
    report = Promise.resolve();
  }
  report.then(
    () => process.exit(exitCode),
    () => process.exit(exitCode),
  );
}

/** Runtime-warm: waits, parked on Hearth's assignment endpoint, until the
 * daemon assigns this sandbox to a function; returns the assignment. */
async function awaitAssignment() {
  const res = await request('GET', `${API_BASE}hearth/assignment`);
  if (res.status !== 200) {
    process.stderr.write(
      `Runtime API refused the assignment poll: ${res.status} ${res.body.toString('utf8', 0, 200)}\n`,
    );
    process.exit(1);
  }
  return JSON.parse(res.body.toString('utf8'));
}

/** Runtime-warm, before the assignment: runs, once, on made-up input,
 * what the assigned start and the first event run for the first time, so
 * that they do not pay for V8's lazy compilation and Node's first runs of
 * its HTTP client and module loader (measured: assignment to first `next`
 * 3.6 ms without, most of it the first response read):
 * - an HTTP exchange like the Runtime API's (a GET, then a POST with a body
 *   answered with an invocation), with a loopback server of its own that is
 *   closed afterwards (never the Runtime API);
 * - the environment swap, the working directory and the module paths of
 *   `applyAssignment`, left as they were;
 * - the runtime's own rehearsal module, loaded through the handler's path
 *   (resolution, the package.json walk, the CommonJS loader) and called
 *   with a context, then forgotten (not in require.cache, not a child of
 *   this module). */
async function rehearse() {
  try {
    await rehearseHttp();
  } catch (_) {
    // A rehearsal only warms: whatever fails here, the real start runs as usual.
  }
  try {
    process.env.HEARTH_REHEARSAL = '1';
    Object.assign(process.env, { HEARTH_REHEARSAL: '2' });
    delete process.env.HEARTH_REHEARSAL;
    process.chdir(process.cwd());
    const Module = require('module');
    if (typeof Module._initPaths === 'function') Module._initPaths();
  } catch (_) {
    // As above.
  }
  try {
    const dir = path.join(__dirname, 'rehearsal');
    const fn = await loadHandler(dir, 'rehearsal.handler');
    const file = path.join(dir, 'rehearsal.js');
    const loaded = require.cache[file];
    delete require.cache[file];
    if (loaded && module.children) {
      module.children = module.children.filter((m) => m !== loaded);
    }
    const context = buildContext(
      {
        'lambda-runtime-deadline-ms': String(Date.now() + 1000),
        'lambda-runtime-aws-request-id': 'rehearsal',
        'lambda-runtime-invoked-function-arn': 'arn:aws:lambda:rehearsal',
      },
      () => {},
    );
    context.getRemainingTimeInMillis();
    const event = JSON.parse('{"rehearsal":[1,"x",null,1.5,{"k":true}]}');
    serialize(await fn(event, context));
    JSON.stringify(toRapidResponse(new Error('rehearsal')));
  } catch (_) {
    // A rehearsal only warms: whatever fails here, the real start runs as usual.
  }
}

/** One GET and one POST through `request`, as the Runtime API's, to a
 * loopback server made for it and closed afterwards. */
async function rehearseHttp() {
  const invocation = '{"rehearsal":[1,"x",null,1.5]}';
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(invocation),
        'Lambda-Runtime-Aws-Request-Id': 'rehearsal',
        'Lambda-Runtime-Deadline-Ms': '0',
      });
      res.end(invocation);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const via = {
    host: '127.0.0.1',
    port: server.address().port,
    agent: new http.Agent({ keepAlive: true, maxSockets: 1 }),
  };
  try {
    const next = await request('GET', `${API_BASE}invocation/next`, undefined, undefined, via);
    JSON.parse(next.body.toString('utf8'));
    await request(
      'POST',
      `${API_BASE}invocation/rehearsal/response`,
      Buffer.from(serialize({ rehearsal: true }), 'utf8'),
      { [THEN_NEXT_HEADER]: '1' },
      via,
    );
  } finally {
    via.agent.destroy();
    server.close();
  }
}

/** Makes this process the function's: exactly the assigned environment (the
 * boot environment only had what the runtime needed), the task root as
 * working directory, NODE_PATH in the module search paths. */
function applyAssignment(env) {
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, env);
  const taskRoot = process.env.LAMBDA_TASK_ROOT || '/var/task';
  try {
    process.chdir(taskRoot);
  } catch (e) {
    process.stderr.write(`Cannot change to the task root: ${e.message}\n`);
  }
  // Node reads NODE_PATH once, at start-up.
  const Module = require('module');
  if (typeof Module._initPaths === 'function') Module._initPaths();
}

async function main() {
  patchConsole();
  process.on('uncaughtException', (err) => onFatalError('Uncaught Exception', err, 129));
  process.on('unhandledRejection', (reason, promise) =>
    onFatalError('Unhandled Promise Rejection', new UnhandledPromiseRejection(reason, promise), 128),
  );
  process.on('beforeExit', () => {
    if (onLoopEmpty) onLoopEmpty();
  });

  const warm = process.env.HEARTH_AWAIT_ASSIGNMENT === '1';
  if (warm) await rehearse();
  const assignment = warm
    ? await awaitAssignment().catch((e) => fatal('Runtime API request failed', e))
    : null;
  let handler;
  try {
    let spec = process.env._HANDLER || '';
    if (assignment) {
      applyAssignment(assignment.env);
      spec = assignment.handler;
    }
    const appRoot = process.env.LAMBDA_TASK_ROOT || '/var/task';
    handler = await loadHandler(appRoot, spec);
  } catch (err) {
    logError('Uncaught Exception', err);
    await postInitError(err).catch(() => {});
    process.exit(129);
  }
  initialised = true;
  loop(handler);
}

main();
