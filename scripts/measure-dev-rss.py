"""Memory of the gateway with all its default local models loaded: starts `x402 dev` (the
gateway and the facilitator run in that one process; the chains are child processes), pays for
each local service once with `x402 run` (so every model is loaded and has run), and prints the
process's VmRSS and VmHWM (MB) from /proc after each call.

Usage: python3 scripts/measure-dev-rss.py X402_BINARY REPO_DIR
(build the binary with `cargo build --release -p x402-cli --bin x402`; hold the build lock.)"""
import base64, json, os, subprocess, sys, tempfile, time, urllib.request

x402, repo = sys.argv[1], sys.argv[2]
state = tempfile.mkdtemp(prefix="h15i-dev-")
home = tempfile.mkdtemp(prefix="h15i-home-")
log = open(os.path.join(state, "dev.log"), "w")
dev = subprocess.Popen([x402, "dev", "--state-dir", state, "--gateway-port", "0", "--facilitator-port", "0",
                        "--models-dir", os.path.join(repo, "models")], stdout=log, stderr=log, cwd=repo)

def status(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) // 1024
    return out

try:
    info = None
    for _ in range(600):
        p = os.path.join(state, "dev.json")
        if os.path.exists(p):
            try:
                info = json.load(open(p)); break
            except ValueError:
                pass
        time.sleep(0.5)
    assert info, open(os.path.join(state, "dev.log")).read()
    url = info["gateway_url"]
    # Whisper loads in the background at start: wait for /health to report it.
    for _ in range(120):
        h = json.load(urllib.request.urlopen(url + "/health"))
        if not h.get("backends", {}).get("stt", {}).get("loading") and not h.get("backends", {}).get("llm", {}).get("loading"):
            break
        time.sleep(0.5)
    print("started", status(dev.pid), flush=True)
    catalog = json.load(urllib.request.urlopen(url + "/catalog"))
    local = [s["key"] for s in catalog["services"] if s.get("available") and s.get("backend") == "local"]
    print("local services:", local, flush=True)
    d = tempfile.mkdtemp()
    subprocess.run(["espeak-ng", "-s", "170", "-w", f"{d}/s.wav", "Hello from the gateway."], check=True)
    wav = base64.b64encode(open(f"{d}/s.wav", "rb").read()).decode()
    pdf_path = os.path.join(repo, "crates/gateway/testdata/hello.pdf")
    pdf = base64.b64encode(open(pdf_path, "rb").read()).decode()
    subprocess.run(["pdftoppm", "-r", "100", "-png", "-singlefile", pdf_path, f"{d}/p"], check=True)
    png = base64.b64encode(open(f"{d}/p.png", "rb").read()).decode()
    inputs = {
        "embed": {"text": "hello world"},
        "rerank": {"query": "payments", "documents": ["USDC payments settle", "the weather is nice"]},
        "pdf-parse": {"file_base64": pdf, "filename": "hello.pdf"},
        "tts": {"text": "Hello from the gateway."},
        "whisper": {"audio_base64": wav},
        "llm": {"prompt": "Say hello.", "max_tokens": 16},
        "code": {"prompt": "Say hello.", "max_tokens": 16},
        "ocr": {"image_base64": png},
        "nsfw": {"image_base64": png},
    }
    print("input sizes:", {k: len(json.dumps(v)) for k, v in inputs.items()}, flush=True)
    env = dict(os.environ, X402_HOME=home, X402_PRIVATE_KEY=info["payer_private_keys"][0])
    done_kinds = set()
    for key in local:
        kind = next((k for k in inputs if key.startswith(k)), None)
        if kind is None:
            print("no input for", key, flush=True); continue
        if key == "llm-stream":
            continue
        path = os.path.join(d, key + ".json")
        open(path, "w").write(json.dumps(inputs[kind]))
        r = subprocess.run([x402, "run", key, "@" + path, "--gateway", url, "--max", "1"],
                           env=env, capture_output=True, text=True, timeout=600)
        print(f"{key}: exit {r.returncode} {r.stdout[:80]!r} {r.stderr.strip().splitlines()[-1:]}", status(dev.pid), flush=True)
    time.sleep(1)
    print("after all", status(dev.pid), flush=True)
finally:
    dev.send_signal(2)
    try:
        dev.wait(30)
    except subprocess.TimeoutExpired:
        dev.kill()
