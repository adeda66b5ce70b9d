/** One `--map-set NF.MAP=KEYHEX:VALUEHEX`: an entry written into an NF's map after installing. */
export interface MapSet {
  nf: string;
  map: string;
  key: Buffer;
  value: Buffer;
}

/** Parses `NF.MAP=KEYHEX:VALUEHEX` (whole bytes of hex on both sides), quoting a bad spec. */
export function parseMapSet(spec: string): MapSet {
  const m = /^([^.=]+)\.([^=]+)=((?:[0-9a-fA-F]{2})+):((?:[0-9a-fA-F]{2})+)$/.exec(spec);
  if (!m) throw new Error(`--map-set "${spec}": expected NF.MAP=KEYHEX:VALUEHEX (whole bytes of hex)`);
  return { nf: m[1]!, map: m[2]!, key: Buffer.from(m[3]!, "hex"), value: Buffer.from(m[4]!, "hex") };
}
