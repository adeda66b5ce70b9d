import type { ConsoleSession } from "@galette/protocol";
import { type FormEvent, lazy, Suspense, useEffect, useRef, useState } from "react";
import { ApiError, api } from "./api";
import { DevicePage, FleetPage, useFleet } from "./fleet";
import { RolloutsPage } from "./rollouts";
import { href, type Route, useRoute } from "./router";

// The graph layout and the map editor load when a chain page is first opened.
const ChainPage = lazy(() => import("./chain").then((m) => ({ default: m.ChainPage })));

export function App() {
  const [session, setSession] = useState<ConsoleSession | null | undefined>(undefined);
  const [error, setError] = useState("");
  useEffect(() => {
    api
      .currentSession()
      .then(setSession)
      .catch((err: Error) => {
        setError(err.message);
        setSession(null);
      });
  }, []);
  if (session === undefined) return <p className="loading">Loading…</p>;
  if (!session) return <Login onLogin={setSession} initialError={error} />;
  return <Console session={session} onLogout={() => setSession(null)} />;
}

function Login({ onLogin, initialError }: { onLogin: (s: ConsoleSession) => void; initialError: string }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(initialError);
  const [busy, setBusy] = useState(false);
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      onLogin(await api.login(token.trim()));
    } catch (err) {
      setError(err instanceof ApiError ? err.message : `login failed: ${(err as Error).message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="login">
      <h1>Galette console</h1>
      <form onSubmit={submit} aria-describedby="login-help">
        <label htmlFor="token">Operator token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          required
          value={token}
          onChange={(e) => setToken(e.target.value)}
        />
        <p id="login-help" className="hint">
          A token with the <code>read</code> scope (<code>galette token create</code>); <code>deploy</code>{" "}
          also allows map editing. It is exchanged for a session cookie and not kept by the page.
        </p>
        <button type="submit" disabled={busy}>
          {busy ? "Logging in…" : "Log in"}
        </button>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

function Console({ session, onLogout }: { session: ConsoleSession; onLogout: () => void }) {
  const route = useRoute();
  const fleet = useFleet(onLogout);
  const main = useRef<HTMLElement>(null);
  // Move focus to the new page's heading so keyboard and screen-reader users land on it.
  // biome-ignore lint/correctness/useExhaustiveDependencies: runs on every page change
  useEffect(() => {
    main.current?.querySelector<HTMLElement>("h1")?.focus();
  }, [route]);
  const logout = async () => {
    try {
      await api.logout();
    } finally {
      onLogout();
    }
  };
  return (
    <>
      <button
        type="button"
        className="skip"
        onClick={() => {
          // the hash is the route here, so no #main anchor: focus the page's heading
          main.current?.querySelector<HTMLElement>("h1")?.focus();
        }}
      >
        Skip to content
      </button>
      <header className="top">
        <span className="brand">Galette</span>
        <nav aria-label="Main">
          <NavLink route={route} page="fleet" to={href.fleet()}>
            Fleet
          </NavLink>
          <NavLink route={route} page="rollouts" to={href.rollouts()}>
            Rollouts
          </NavLink>
        </nav>
        <span className="who" title={`expires ${session.expiresAt}`}>
          {session.name} <span className="scopes">({session.scopes.join(", ")})</span>
        </span>
        <button type="button" onClick={logout}>
          Log out
        </button>
      </header>
      {fleet.error && (
        <p role="status" className="banner">
          {fleet.error}
        </p>
      )}
      <main id="main" ref={main}>
        <Page route={route} session={session} fleet={fleet} />
      </main>
    </>
  );
}

function NavLink(props: { route: Route; page: Route["page"]; to: string; children: string }) {
  const current =
    props.route.page === props.page || (props.page === "fleet" && props.route.page === "device");
  return (
    <a href={props.to} aria-current={current ? "page" : undefined}>
      {props.children}
    </a>
  );
}

function Page({
  route,
  session,
  fleet,
}: {
  route: Route;
  session: ConsoleSession;
  fleet: ReturnType<typeof useFleet>;
}) {
  switch (route.page) {
    case "fleet":
      return <FleetPage fleet={fleet} />;
    case "device":
      return <DevicePage name={route.name} fleet={fleet} />;
    case "chain":
      return (
        <Suspense fallback={<p>Loading…</p>}>
          <ChainPage name={route.name} version={route.version} canEdit={session.scopes.includes("deploy")} />
        </Suspense>
      );
    case "rollouts":
      return <RolloutsPage />;
  }
}
