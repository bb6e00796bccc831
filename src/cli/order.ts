export async function runOrder(_argv: string[]): Promise<number> {
  console.error('ngtt order: not implemented yet');
  return 2;
}
