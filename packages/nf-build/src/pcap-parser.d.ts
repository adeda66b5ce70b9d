/** The part of pcap-parser (no bundled types) nf-test uses. */
declare module "pcap-parser" {
  import type { EventEmitter } from "node:events";
  export function parse(input: string | NodeJS.ReadableStream): EventEmitter;
}
