// The node function of the invoke suite (handler `index.handler`).
//
// It echoes its event unless the event is an object with an "__e2e" key naming
// an operation: raise, print, sleep, exit, alloc, env, context, big, whoami, version.

const BOOT = require('crypto').randomUUID(); // one per runtime process: tells sandboxes apart
const VERSION_MARK = 'unversioned'; // replaced per published version by the qualifier test

exports.handler = async (event, context) => {
  const op = event !== null && typeof event === 'object' && !Array.isArray(event) ? event.__e2e : undefined;
  if (op === undefined) return event;
  switch (op) {
    case 'raise':
      throw new TypeError(event.message);
    case 'print':
      for (const line of event.lines) console.log(line);
      return { printed: event.lines.length };
    case 'sleep':
      if (event.announce) console.log(event.announce);
      await new Promise((resolve) => setTimeout(resolve, event.seconds * 1000));
      return { slept: event.seconds };
    case 'exit':
      process.exit(event.code);
      break;
    case 'alloc': {
      const chunks = [];
      for (let i = 0; i < Math.floor(event.mb / 16); i++) chunks.push(Buffer.alloc(16 << 20, 1));
      return { allocated_mb: 16 * chunks.length };
    }
    case 'env':
      return { ...process.env };
    case 'context':
      return {
        aws_request_id: context.awsRequestId,
        function_name: context.functionName,
        function_version: context.functionVersion,
        memory_limit_in_mb: String(context.memoryLimitInMB),
        invoked_function_arn: context.invokedFunctionArn,
        log_group_name: context.logGroupName,
        remaining_ms: context.getRemainingTimeInMillis(),
        client_context: context.clientContext === undefined ? null : context.clientContext,
        version_mark: VERSION_MARK,
      };
    case 'big':
      return 'x'.repeat(event.size);
    case 'whoami':
      await new Promise((resolve) => setTimeout(resolve, (event.seconds || 0) * 1000));
      return { boot: BOOT, uid: process.getuid() };
    case 'version':
      return { mark: VERSION_MARK, env_version: process.env.AWS_LAMBDA_FUNCTION_VERSION };
    default:
      throw new Error('unknown op ' + op);
  }
};
