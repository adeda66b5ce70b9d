import { useEffect, useState } from "react";

/**
 * Hash routes (#/devices/NAME, #/chains/NAME, #/rollouts): every page is the one index.html
 * the controller serves at /, so no server route exists per page.
 */
export type Route =
  | { page: "fleet" }
  | { page: "device"; name: string }
  | { page: "chain"; name: string; version?: number }
  | { page: "rollouts" };

export function parseRoute(hash: string): Route {
  const [path = "", query = ""] = hash.replace(/^#/, "").split("?");
  let parts: string[];
  try {
    parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  } catch {
    return { page: "fleet" }; // a malformed escape: not a page of ours
  }
  if (parts[0] === "devices" && parts[1]) return { page: "device", name: parts[1] };
  if (parts[0] === "chains" && parts[1]) {
    const version = Number(new URLSearchParams(query).get("version"));
    return { page: "chain", name: parts[1], ...(version > 0 ? { version } : {}) };
  }
  if (parts[0] === "rollouts") return { page: "rollouts" };
  return { page: "fleet" };
}

export const href = {
  fleet: () => "#/",
  device: (name: string) => `#/devices/${encodeURIComponent(name)}`,
  chain: (name: string, version?: number) =>
    `#/chains/${encodeURIComponent(name)}${version ? `?version=${version}` : ""}`,
  rollouts: () => "#/rollouts",
};

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
