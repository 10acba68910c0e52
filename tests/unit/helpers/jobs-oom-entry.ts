// An engine entry for the out-of-memory tests: on 'train' it keeps allocating
// until V8 runs out of heap (the child is started with a small
// --max-old-space-size), as a run that needs more memory than there is dies.
const held: number[][] = [];
process.on('message', (m: { type: string }) => {
  if (m.type !== 'train') return;
  const grow = () => {
    for (let i = 0; i < 50; ++i) held.push(new Array(100_000).fill(i));
    setImmediate(grow);
  };
  grow();
});
