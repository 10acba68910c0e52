// The engine process handle the app holds: exit reasons, stop and kill
// timeouts. The utility process itself needs Electron; here the same handle
// runs over a real Node child process, which has the same small shape.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import type { EngineExit, FromEngine } from '../../main/jobs/engine-process.ts';
import { hostEngineChild, type EngineChild, type EngineChildOptions } from '../../electron/engine-child.ts';
import { classifyEngineExit } from '../../electron/exit-reason.ts';

/** A Node child running `code`, seen through the EngineChild shape. SIGTERM is the polite kill. */
function nodeChild(code: string): EngineChild {
  const cp = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'], serialization: 'json' });
  return {
    get pid() {
      return cp.pid;
    },
    postMessage: (m) => {
      cp.send(m);
    },
    kill: () => {
      cp.kill('SIGTERM');
    },
    onMessage: (l) => cp.on('message', l),
    onExit: (l) => cp.once('exit', (code, signal) => l({ code, signal })),
  };
}

function host(code: string, opts: EngineChildOptions = {}) {
  const engine = hostEngineChild(nodeChild(code), { goneGraceMs: 10, ...opts });
  const messages: FromEngine[] = [];
  engine.onMessage((m) => messages.push(m));
  const exit = new Promise<EngineExit>((resolve) => engine.onExit(resolve));
  const next = (type: FromEngine['type']) =>
    new Promise<FromEngine>((resolve) => engine.onMessage((m) => m.type === type && resolve(m)));
  return { engine, messages, exit, next };
}

// An engine stand-in: answers 'train' with an event and 'finished', 'stop' per `onStop`.
const ENGINE = (onStop: string, extra = '') => `
  ${extra}
  process.on('message', (m) => {
    if (m.type === 'train') {
      process.send({ type: 'event', jobId: m.jobId, event: { type: 'start' } });
      process.send({ type: 'finished', jobId: m.jobId, result: { steps: 1 } });
    }
    if (m.type === 'stop') { ${onStop} }
    if (m.type === 'crash') process.abort();
    if (m.type === 'quit') process.exit(3);
  });
  process.send({ type: 'event', jobId: 'ready', event: {} });
  setInterval(() => {}, 1000);
`;

test('exit reasons: Electron reports and signals map to exit, signal or crash', () => {
  const c = (r: Parameters<typeof classifyEngineExit>[0]) => classifyEngineExit(r);
  assert.deepEqual(c({ code: 0, signal: null, killRequested: false }), { code: 0, signal: null, reason: 'exit' });
  assert.equal(c({ code: 2, signal: null, killRequested: false }).reason, 'exit');
  assert.match(c({ code: 2, signal: null, killRequested: false }).detail ?? '', /code 2/);
  const oom = c({ code: 0, signal: null, gone: { reason: 'oom', exitCode: -536870904 }, killRequested: false });
  assert.equal(oom.reason, 'crash');
  assert.match(oom.detail ?? '', /out of memory/);
  assert.equal(c({ code: 11, signal: null, gone: { reason: 'crashed', exitCode: 11 }, killRequested: false }).reason, 'crash');
  assert.equal(c({ code: 1, signal: null, gone: { reason: 'launch-failed', exitCode: 1 }, killRequested: false }).reason, 'crash');
  assert.equal(c({ code: 9, signal: null, gone: { reason: 'killed', exitCode: 9 }, killRequested: true }).reason, 'signal');
  const killed = c({ code: 9, signal: null, gone: { reason: 'killed', exitCode: 9 }, killRequested: false });
  assert.equal(killed.reason, 'crash');
  assert.match(killed.detail ?? '', /memory/);
  assert.equal(c({ code: null, signal: 'SIGSEGV', killRequested: false }).reason, 'crash');
  assert.equal(c({ code: null, signal: 'SIGSEGV', killRequested: true }).reason, 'crash', 'a fault is a crash even while stopping');
  assert.equal(c({ code: null, signal: 'SIGKILL', killRequested: false }).reason, 'crash');
  assert.equal(c({ code: null, signal: 'SIGKILL', killRequested: true }).reason, 'signal');
  assert.equal(c({ code: null, signal: 'SIGTERM', killRequested: false }).reason, 'signal');
  assert.equal(c({ code: 0, signal: null, gone: { reason: 'clean-exit', exitCode: 0 }, killRequested: false }).reason, 'exit');
});

test('messages pass through both ways; a normal exit reports its code', async () => {
  const { engine, messages, exit, next } = host(ENGINE(''));
  await next('event');
  engine.send({ type: 'train', jobId: 'j1', config: {} as never });
  const finished = await next('finished');
  assert.deepEqual(finished, { type: 'finished', jobId: 'j1', result: { steps: 1 } });
  assert.ok(messages.some((m) => m.type === 'event' && m.jobId === 'j1'));
  engine.send({ type: 'quit' } as never);
  const e = await exit;
  assert.equal(e.reason, 'exit');
  assert.equal(e.code, 3);
  assert.equal(engine.exited, true);
  engine.send({ type: 'stop', jobId: 'j1' }); // dropped after exit, no throw
});

test('a stop that is not answered in time kills the process', async () => {
  const { engine, exit, next } = host(ENGINE('/* ignores stop */'), { stopTimeoutMs: 200, killTimeoutMs: 5000 });
  await next('event');
  engine.send({ type: 'stop', jobId: 'j1' });
  const e = await exit;
  assert.equal(e.reason, 'signal');
  assert.equal(e.signal, 'SIGTERM');
});

test('a stop answered by failed clears the timer and the process lives on', async () => {
  const { engine, exit, next } = host(
    ENGINE("process.send({ type: 'failed', jobId: m.jobId, kind: 'user', message: 'stopped' });"),
    { stopTimeoutMs: 150 },
  );
  await next('event');
  engine.send({ type: 'stop', jobId: 'j1' });
  const failed = await next('failed');
  assert.equal(failed.jobId, 'j1');
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(engine.exited, false, 'not killed after the stop was answered');
  engine.kill();
  assert.equal((await exit).reason, 'signal');
});

test('kill() ends a process that ignores SIGTERM after the timeout (SIGKILL)', async () => {
  const { engine, exit, next } = host(ENGINE('', "process.on('SIGTERM', () => {});"), { killTimeoutMs: 200 });
  await next('event');
  engine.kill();
  const e = await exit;
  assert.equal(e.signal, 'SIGKILL');
  assert.equal(e.reason, 'signal', 'the app asked for it');
});

test('a native fault in the engine is a crash with the reason', async () => {
  const { engine, exit, next } = host(ENGINE(''));
  await next('event');
  engine.send({ type: 'crash' } as never);
  const e = await exit;
  assert.equal(e.reason, 'crash');
  assert.equal(e.signal, 'SIGABRT');
  assert.match(e.detail ?? '', /SIGABRT/);
});

test("Electron's child-process-gone report decides the reason, whichever arrives first", async () => {
  const { engine, exit, next } = host(ENGINE(''), { goneGraceMs: 2000 });
  await next('event');
  engine.send({ type: 'quit' } as never);
  setTimeout(() => engine.reportGone({ reason: 'oom', exitCode: 3 }), 100);
  const e = await exit;
  assert.equal(e.reason, 'crash');
  assert.match(e.detail ?? '', /out of memory/);
});

test('messages that are not engine messages go to onBadMessage', async () => {
  const bad: unknown[] = [];
  const { exit } = host("process.send({ hello: 1 }); process.send({ type: 'event', jobId: 'x', event: {} }); setTimeout(() => process.exit(0), 100);", {
    onBadMessage: (m) => bad.push(m),
  });
  assert.equal((await exit).reason, 'exit');
  assert.deepEqual(bad, [{ hello: 1 }]);
});
