import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  DEFAULT_SERVER_HOSTS,
  initPkiDir,
  issueServerCert,
  loadPkiDir,
  PKI_FILES,
  writePrivateKey,
} from "@galette/pki";
import type { Command } from "commander";

const out = (text: string) => process.stdout.write(`${text}\n`);

export function registerPkiCommands(program: Command): void {
  const pki = program.command("pki").description("The controller's certificate authority");

  pki
    .command("init")
    .description(
      `Create a CA and the controller's server certificate in DIR (${Object.values(PKI_FILES).join(", ")})`,
    )
    .requiredOption("--data <dir>", "controller data directory")
    .option(
      "--hosts <list>",
      "comma-separated DNS names / IPs the controller is reached at (server certificate SANs)",
      DEFAULT_SERVER_HOSTS.join(","),
    )
    .option("--force", "replace an existing CA (every enrolled device must be re-enrolled)")
    .action((flags: { data: string; hosts: string; force?: boolean }) => {
      const hosts = flags.hosts
        .split(",")
        .map((h) => h.trim())
        .filter(Boolean);
      const result = initPkiDir(flags.data, { serverHosts: hosts, ...(flags.force ? { force: true } : {}) });
      out(`CA "${result.caInfo.commonName}" (RSA-3072, valid until ${result.caInfo.notAfter.toISOString()})`);
      out(
        `wrote ${flags.data}/${PKI_FILES.caCert}, ${PKI_FILES.caKey} (0600), ${PKI_FILES.serverCert}, ${PKI_FILES.serverKey} (0600)`,
      );
      out(`server certificate names: ${hosts.join(", ")}`);
    });

  pki
    .command("server-cert")
    .description("Re-issue the controller's server certificate from the existing CA (e.g. new addresses)")
    .requiredOption("--data <dir>", "controller data directory")
    .requiredOption("--hosts <list>", "comma-separated DNS names / IPs (server certificate SANs)")
    .action((flags: { data: string; hosts: string }) => {
      const hosts = flags.hosts
        .split(",")
        .map((h) => h.trim())
        .filter(Boolean);
      const { ca } = loadPkiDir(flags.data);
      const server = issueServerCert(ca, { hosts });
      writeFileSync(join(flags.data, PKI_FILES.serverCert), server.certPem, { mode: 0o644 });
      writePrivateKey(join(flags.data, PKI_FILES.serverKey), server.keyPem);
      out(
        `wrote ${flags.data}/${PKI_FILES.serverCert} for ${hosts.join(", ")}; restart the controller to use it`,
      );
    });
}
