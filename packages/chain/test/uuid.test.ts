import { describe, expect, it } from "vitest";
import { GALETTE_NAMESPACE, instanceUuid, uuidV5 } from "../src/index";

describe("UUIDv5", () => {
  it("matches the RFC 9562 test vector (DNS namespace, www.example.com)", () => {
    expect(uuidV5("www.example.com", "6ba7b810-9dad-11d1-80b4-00c04fd430c8")).toBe(
      "2ed6657d-e927-568b-95e1-2665a8aea6a2",
    );
  });

  it("derives instance UUIDs from chain/instance, deterministic and distinct", () => {
    const a = instanceUuid("security", "dpi");
    expect(a).toBe(uuidV5("security/dpi", GALETTE_NAMESPACE));
    expect(instanceUuid("security", "dpi")).toBe(a);
    expect(instanceUuid("security", "weak-classifier")).not.toBe(a);
    expect(instanceUuid("other", "dpi")).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it("mixes in the NF build hash when given", () => {
    const withHash = instanceUuid("security", "dpi", "sha256:abc");
    expect(withHash).toBe(uuidV5("security/dpi/sha256:abc", GALETTE_NAMESPACE));
    expect(withHash).not.toBe(instanceUuid("security", "dpi"));
  });

  it("rejects a malformed namespace", () => {
    expect(() => uuidV5("x", "not-a-uuid")).toThrow(/not a UUID/);
  });
});
