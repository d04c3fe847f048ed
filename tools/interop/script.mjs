// What the interop scripts share: stdout kept for their one result, failing with the script's
// name, error messages with their causes, and reading the settings they take from the
// environment.

/// Sets up the script `name`: whatever library code logs goes to stderr, so that stdout carries
/// only the script's result. Returns `fail(message)`, which exits 1 with `name: message` on
/// stderr, and readers of environment variables that fail the same way when a value is bad.
export function startScript(name) {
  console.log = console.info = console.debug = (...args) => console.error(...args);

  function fail(message) {
    process.stderr.write(`${name}: ${message}\n`);
    process.exit(1);
  }

  return {
    fail,

    /// The URL in `variable`, which is required.
    requiredUrl(variable) {
      const value = process.env[variable];
      if (!value) fail(`${variable} is required`);
      try {
        new URL(value);
      } catch {
        fail(`${variable} is not a URL: ${value}`);
      }
      return value;
    },

    /// The 0x-prefixed 32-byte hex private key in `variable`, which is required.
    privateKey(variable) {
      const value = process.env[variable];
      if (!value || !/^0x[0-9a-fA-F]{64}$/.test(value)) fail(`${variable} must be 0x + 64 hex digits`);
      return value;
    },

    /// Standard input read whole and parsed as JSON; fails saying it should be `what`.
    async stdinJson(what) {
      try {
        const chunks = [];
        for await (const chunk of process.stdin) chunks.push(chunk);
        return JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch (e) {
        fail(`stdin is not ${what}: ${describeError(e)}`);
      }
    },

    /// The CAIP-2 network in NETWORK, by default Base (eip155:8453).
    network() {
      const value = process.env.NETWORK || "eip155:8453";
      if (!/^[^:]+:[^:]+$/.test(value)) fail(`NETWORK must be a CAIP-2 id like eip155:8453, got ${value}`);
      return value;
    },
  };
}

/// An error's message followed by those of its causes (five at most).
export function describeError(e) {
  let text = e instanceof Error ? e.message : String(e);
  for (let c = e?.cause, depth = 0; c && depth < 5; c = c.cause, depth++) {
    text += ` (caused by: ${c instanceof Error ? c.message : String(c)})`;
  }
  return text;
}
