// Loaded once by a runtime-warm Node.js sandbox while it waits for its
// assignment, through the same path as a handler's module (resolution, the
// package.json walk, the CommonJS loader, compile), then forgotten. Called
// once on made-up input, never with a real event.
'use strict';

exports.handler = async (event, context) => ({
  statusCode: 200,
  body: { function: context.functionName || '', event, ok: [1, 2.5, null, true] },
});
