/** A build failure meant for the NF author: the message says what went wrong and how to fix it. */
export class NfBuildError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "NfBuildError";
  }
}
