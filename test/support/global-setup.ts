export default function setup(): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 24) throw new Error(`Node ${process.versions.node}: the tests need Node 24 (run them with npm test)`);
}
