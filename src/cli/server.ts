export async function runServer(_argv: string[]): Promise<number> {
  console.error('ngtt server: not implemented yet');
  return 2;
}
