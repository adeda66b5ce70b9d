import { DEFAULT_SERVER_HOSTS, initPkiDir, PKI_FILES } from "@galette/pki";
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
}
