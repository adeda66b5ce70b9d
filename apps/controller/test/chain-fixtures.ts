/**
 * A line chain of `n` NFs (rx → nf0 → … → tx, each also able to drop), as the limits
 * acceptance generates it: 8000 of them is about 850 KB of TOML. The 256th function
 * (`nf255`, number 256) is on line 511.
 */
export function lineChain(n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(`[functions.nf${i}]\npath = "nf-examples/decrement-ttl"`);
  out.push(`[[links]]\nfrom = "rx"\nto = ["nf0"]`);
  for (let i = 0; i < n; i++)
    out.push(`[[links]]\nfrom = "nf${i}"\nto = ["${i + 1 < n ? `nf${i + 1}` : "tx"}", "drop"]`);
  return `${out.join("\n")}\n`;
}
