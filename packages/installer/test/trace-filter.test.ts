import { TraceTerm } from "@galette/xdp-native";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileTraceFilter, TraceFilterError } from "../src/trace-filter";

const ip = (s: string) => Buffer.from(s.split(".").map(Number));

describe("trace filter language", () => {
  it("compiles an empty filter to no terms (every frame)", () => {
    expect(compileTraceFilter("").terms).toBe(0);
    expect(compileTraceFilter("   ").terms).toBe(0);
  });

  it("compiles protocol, ethertype, address and port terms", () => {
    const f = compileTraceFilter("ip and udp and src host 10.0.0.1 and dst net 192.168.0.0/16 and port 53");
    expect(f.terms).toBe(
      TraceTerm.ethertype | TraceTerm.proto | TraceTerm.src | TraceTerm.dst | TraceTerm.port,
    );
    expect(f.negate).toBe(0);
    expect(f.ethertype).toBe(0x0800);
    expect(f.proto).toBe(17);
    expect(f.src).toEqual(ip("10.0.0.1"));
    expect(f.srcMask).toEqual(ip("255.255.255.255"));
    expect(f.dst).toEqual(ip("192.168.0.0"));
    expect(f.dstMask).toEqual(ip("255.255.0.0"));
    expect(f.port).toBe(53);
  });

  it("knows the tcpdump spellings: &&, !, not, host, src/dst port, proto N, ip6, arp, icmp6", () => {
    const f = compileTraceFilter("ip6 && !tcp && src port 1 && dst port 2 && host 1.2.3.4");
    expect(f.ethertype).toBe(0x86dd);
    expect(f.proto).toBe(6);
    expect(f.negate).toBe(TraceTerm.proto);
    expect([f.sport, f.dport]).toEqual([1, 2]);
    expect(f.host).toEqual(ip("1.2.3.4"));
    expect(compileTraceFilter("proto 132").proto).toBe(132);
    expect(compileTraceFilter("arp").ethertype).toBe(0x0806);
    expect(compileTraceFilter("icmp6").proto).toBe(58);
    expect(compileTraceFilter("not net 10.1.2.3/8").host).toEqual(ip("10.0.0.0"));
    expect(compileTraceFilter("UDP").proto).toBe(17);
    expect(compileTraceFilter("net 0.0.0.0/0").hostMask).toEqual(ip("0.0.0.0"));
  });

  it.each([
    ["udp or tcp", 5, /"or" is not supported/],
    ["(udp)", 1, /"\(udp\)" is not supported/],
    ["udp and", 8, /expected a term after "and"/],
    ["udp tcp", 5, /expected "and" between terms, got "tcp"/],
    ["udp and tcp", 9, /a second proto term/],
    ["host 1.2.3.4 and host 5.6.7.8", 18, /a second host term/],
    ["host 300.1.1.1", 6, /"300.1.1.1" is not an IPv4 address/],
    ["host fe80::1", 6, /not an IPv4 address \(IPv6 addresses are not supported\)/],
    ["net 10.0.0.0/33", 5, /not an IPv4 prefix/],
    ["net 10.0.0.0", 5, /not an IPv4 prefix/],
    ["port 70000", 6, /"70000" is not a port/],
    ["port", 5, /expected a port number at the end/],
    ["src foo 1", 5, /expected host, net or port after src, got "foo"/],
    ["proto x", 7, /"x" is not a protocol number/],
    ["banana", 1, /unknown term "banana"/],
    ["not", 4, /expected a term after not at the end/],
  ])("refuses %j at column %i", (expr, column, message) => {
    let err: unknown;
    try {
      compileTraceFilter(expr);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TraceFilterError);
    expect((err as TraceFilterError).column).toBe(column);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toMatch(new RegExp(`^trace filter, column ${column}: `));
  });

  it("never throws anything but a TraceFilterError, whatever the input", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 80 }),
          fc
            .array(
              fc.constantFrom(
                "udp",
                "and",
                "not",
                "!",
                "&&",
                "host",
                "1.2.3.4",
                "port",
                "53",
                "src",
                "net",
                "10.0.0.0/8",
                "or",
                "(",
              ),
              { maxLength: 12 },
            )
            .map((w) => w.join(" ")),
        ),
        (expr) => {
          try {
            const f = compileTraceFilter(expr);
            expect(f.negate & ~f.terms).toBe(0);
          } catch (e) {
            expect(e).toBeInstanceOf(TraceFilterError);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});
