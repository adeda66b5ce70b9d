import { describe, expect, it } from "vitest";
import { parseMapSet } from "../src/map-set";

describe("--map-set parsing", () => {
  it("parses NF.MAP=KEYHEX:VALUEHEX", () => {
    expect(parseMapSet("access-control.allow_list=200000000a000001:00000000")).toEqual({
      nf: "access-control",
      map: "allow_list",
      key: Buffer.from("200000000a000001", "hex"),
      value: Buffer.alloc(4),
    });
  });
  it.each(["allow_list=00:00", "a.b=0:00", "a.b=00", "a.b=zz:00", "a.b=:00", "a.b=00:0"])(
    "refuses %s",
    (spec) => {
      expect(() => parseMapSet(spec)).toThrow(`--map-set "${spec}": expected NF.MAP=KEYHEX:VALUEHEX`);
    },
  );
});
