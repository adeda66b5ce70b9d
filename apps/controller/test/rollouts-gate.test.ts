import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  evaluateGate,
  GATE_VARIABLES,
  GateError,
  type GateValues,
  MAX_GATE_DEPTH,
  parseGate,
} from "../src/rollouts-gate";

const healthy: GateValues = {
  installed: true,
  online: true,
  heartbeat: 1,
  aborts: 0,
  errors: 0,
  drops: 0,
  drop_ratio: 1,
};

const errorOf = (source: string): GateError => {
  try {
    parseGate(source);
  } catch (err) {
    expect(err).toBeInstanceOf(GateError);
    return err as GateError;
  }
  throw new Error(`${JSON.stringify(source)} parsed`);
};

describe("gate expressions", () => {
  it("parses the documented examples and reads the variables they use", () => {
    expect(parseGate("installed && aborts == 0 && drop_ratio <= 1.2").variables).toEqual([
      "installed",
      "aborts",
      "drop_ratio",
    ]);
    expect(parseGate("installed && (aborts == 0 || !online) && heartbeat < 30").variables).toEqual([
      "installed",
      "aborts",
      "online",
      "heartbeat",
    ]);
    expect(parseGate("true").variables).toEqual([]);
  });

  it("evaluates with && binding tighter than ||, and ! tightest", () => {
    const g = parseGate("aborts == 0 || errors == 0 && installed");
    expect(evaluateGate(g, { ...healthy, aborts: 1, installed: false }).pass).toBe(false);
    expect(evaluateGate(g, { ...healthy, aborts: 0, installed: false }).pass).toBe(true);
    expect(evaluateGate(parseGate("!installed || online"), { ...healthy, online: false }).pass).toBe(false);
    expect(evaluateGate(parseGate("drop_ratio <= 1.2"), { ...healthy, drop_ratio: 1.25 }).pass).toBe(false);
    expect(evaluateGate(parseGate("drop_ratio <= .5"), { ...healthy, drop_ratio: 0.5 }).pass).toBe(true);
  });

  it("names the failing terms with the values they read", () => {
    const g = parseGate("installed && aborts == 0 && drop_ratio <= 1.2");
    const r = evaluateGate(g, { ...healthy, aborts: 4096 });
    expect(r).toEqual({ pass: false, failed: [{ term: "aborts == 0", values: { aborts: 4096 } }] });
    const both = evaluateGate(g, { ...healthy, installed: false, drop_ratio: 3 });
    expect(both.failed.map((t) => t.term)).toEqual(["installed", "drop_ratio <= 1.2"]);
    // through a negation and an or: every operand of the failed disjunction
    const or = evaluateGate(parseGate("!(aborts > 0) && (online || heartbeat < 5)"), {
      ...healthy,
      aborts: 2,
      online: false,
      heartbeat: 9,
    });
    expect(or.failed).toEqual([
      { term: "(aborts > 0)", values: { aborts: 2 } },
      { term: "online", values: { online: false } },
      { term: "heartbeat < 5", values: { heartbeat: 9 } },
    ]);
    expect(evaluateGate(g, healthy)).toEqual({ pass: true, failed: [] });
  });

  it("refuses unknown identifiers at the column they start", () => {
    const e = errorOf("installed && abort == 0");
    expect(e.column).toBe(14);
    expect(e.message).toMatch(
      /gate column 14: unknown identifier "abort" \(a gate may use: installed, online/,
    );
    expect(e.pointer).toBe("installed && abort == 0\n             ^");
    // an object's own properties only: no prototype names
    expect(errorOf("constructor == 0").reason).toMatch(/unknown identifier "constructor"/);
    expect(errorOf("__proto__").reason).toMatch(/unknown identifier/);
  });

  it("points at syntax errors", () => {
    expect(errorOf("installed &&").column).toBe(13);
    expect(errorOf("installed &&").reason).toMatch(/expected a value .* found the end of the gate/);
    expect(errorOf("installed & online").reason).toMatch(/"&" is not an operator: use "&&"/);
    expect(errorOf("aborts = 0").column).toBe(8);
    expect(errorOf("aborts = 0").reason).toMatch(/compare with "=="/);
    expect(errorOf("(installed").reason).toMatch(/expected "\)" to close the "\(" at column 1/);
    expect(errorOf("installed)").column).toBe(10);
    expect(errorOf("0 < aborts < 3").reason).toMatch(/comparisons do not chain/);
    expect(errorOf("aborts == 0 $").reason).toMatch(/unexpected character "\$"/);
    expect(errorOf("1.2.3 > aborts").reason).toMatch(/a number ends with "."/);
    expect(errorOf("   ").reason).toBe("the gate is empty");
    expect(errorOf("installed\n&& online").reason).toBe("the gate must be one line");
  });

  it("type-checks: booleans for && || !, numbers for < <= > >=, one type on both sides of ==", () => {
    expect(errorOf("aborts && installed").reason).toMatch(
      /"&&" needs a boolean, but "aborts" is a number \(compare it, e\.g\. aborts == 0\)/,
    );
    expect(errorOf("installed && heartbeat").reason).toMatch(/e\.g\. heartbeat <= 30/);
    expect(errorOf("installed < 3").column).toBe(1);
    expect(errorOf("installed == 1").column).toBe(14);
    expect(errorOf("!aborts").reason).toMatch(/"!" needs a boolean/);
    expect(errorOf("aborts").reason).toMatch(/must be true or false, but it is a number/);
    expect(parseGate("installed == true && online != false").variables).toEqual(["installed", "online"]);
  });

  it("bounds nesting and length", () => {
    const deep = (n: number) => `${"(".repeat(n)}installed${")".repeat(n)}`;
    expect(parseGate(deep(MAX_GATE_DEPTH)).variables).toEqual(["installed"]);
    expect(errorOf(deep(MAX_GATE_DEPTH + 1)).reason).toMatch(/nested deeper than 32/);
    expect(errorOf(`${"!".repeat(MAX_GATE_DEPTH + 1)}installed`).reason).toMatch(/nested deeper/);
    expect(errorOf(`installed${" && installed".repeat(200)}`).reason).toMatch(/longer than 1024/);
  });

  it("never throws anything but a GateError, whatever the input", () => {
    const words = [
      ...Object.keys(GATE_VARIABLES),
      "true",
      "false",
      "0",
      "1.5",
      ".5",
      "&&",
      "||",
      "!",
      "(",
      ")",
      "==",
      "!=",
      "<",
      "<=",
      ">",
      ">=",
      "=",
      "&",
      "nope",
      " ",
    ];
    const check = (source: string) => {
      try {
        const gate = parseGate(source);
        // whatever parses evaluates to a boolean
        expect(typeof evaluateGate(gate, healthy).pass).toBe("boolean");
      } catch (err) {
        if (!(err instanceof GateError)) throw err;
        expect(err.column).toBeGreaterThanOrEqual(1);
        expect(err.column).toBeLessThanOrEqual(source.length + 1);
      }
    };
    fc.assert(fc.property(fc.string({ maxLength: 200 }), check), { numRuns: 2000 });
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...words), { maxLength: 60 }), (parts) => check(parts.join(" "))),
      { numRuns: 3000 },
    );
    fc.assert(
      fc.property(fc.array(fc.constantFrom("(", "!", ")"), { maxLength: 120 }), (parts) =>
        check(`${parts.join("")}installed`),
      ),
      { numRuns: 500 },
    );
  });
});
