// What the interop scripts share: stdout kept for their one result, failing with the script's
// name, error messages with their causes, reading the settings they take from the environment,
// and serving HTTP on a loopback port until killed.

/// Sets up the script `name`: whatever library code logs goes to stderr, so that stdout carries
/// only the script's result. Returns `fail(message)`, which exits 1 with `name: message` on
/// stderr, readers of environment variables that fail the same way when a value is bad, and,
/// for scripts that serve HTTP, `logRequests` and `listen`.
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

    /// The port in PORT, by default 0 (any free port).
    port() {
      const port = Number(process.env.PORT || "0");
      if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad PORT ${process.env.PORT}`);
      return port;
    },

    /// Has the express `app` write one stderr line per request: method, URL, `note(req)` and
    /// the status.
    logRequests(app, note = () => "") {
      app.use((req, res, next) => {
        res.on("finish", () => {
          process.stderr.write(`${name}: ${req.method} ${req.originalUrl}${note(req)} -> ${res.statusCode}\n`);
        });
        next();
      });
    },

    /// Serves the express `app` on 127.0.0.1:`port` until SIGINT or SIGTERM, printing the one
    /// stdout line "LISTENING <port>" once the socket listens; fails when it cannot listen.
    listen(app, port) {
      const server = app.listen(port, "127.0.0.1");
      server.on("error", (e) => fail(`cannot listen on 127.0.0.1:${port}: ${e.message}`));
      server.on("listening", () => {
        process.stdout.write(`LISTENING ${server.address().port}\n`);
      });
      for (const sig of ["SIGINT", "SIGTERM"]) {
        process.on(sig, () => {
          server.close();
          process.exit(0);
        });
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
