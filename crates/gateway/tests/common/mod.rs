//! The whole stack for gateway tests: the test kit's [`x402_testkit::Stack`] (a dev chain and
//! our facilitator, called in process) and the gateway with the real local models from
//! `models/`.
#![allow(dead_code, unreachable_pub)]

pub mod chat;
pub mod speech;

use std::path::PathBuf;

use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use serde_json::Value;
use x402_gateway::{GatewayConfig, RunningGateway};
use x402_testkit::Wire;

pub struct Stack {
    /// The devnet and our facilitator, which the gateway calls in process.
    pub base: x402_testkit::Stack,
    pub gateway: RunningGateway,
    pub url: String,
    pub http: reqwest::Client,
}

/// The models installed by scripts/install-models.sh.
pub fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    assert!(
        dir.join("all-minilm-l6-v2/model.safetensors").is_file(),
        "the models are not installed: run scripts/install-models.sh"
    );
    dir
}

pub fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name),
    )
    .unwrap()
}

/// The config of a gateway over `base` (listening on a free port, jobs in `base`'s folder),
/// with `top` (top-level TOML keys) ahead of its tables and `extra` appended (its first keys
/// land in the `[[payment.accepts]]` entry).
pub fn gateway_config(base: &x402_testkit::Stack, top: &str, extra: &str) -> GatewayConfig {
    let requirements = base.chain.requirements(1);
    let extra_json = requirements.extra.clone().unwrap();
    let gateway_toml = format!(
        "listen = \"127.0.0.1:0\"\nmodels_dir = {models:?}\njobs_db = {jobs_db:?}\n{top}\n[payment]\npay_to = \"{pay_to}\"\n\n\
         [[payment.accepts]]\nnetwork = \"{network}\"\nasset = \"{asset}\"\ndecimals = 6\nname = {name}\nversion = {version}\n{extra}\n",
        models = models_dir().display().to_string(),
        jobs_db = base
            .dir
            .path()
            .join("gateway-jobs.db")
            .display()
            .to_string(),
        pay_to = requirements.pay_to,
        network = requirements.network,
        asset = requirements.asset,
        name = extra_json["name"],
        version = extra_json["version"],
    );
    GatewayConfig::parse(&gateway_toml).expect("gateway config parses")
}

/// The `[batch_settlement]` table of a stack offering it: channels in `base`'s folder (unless
/// the config names a database), claimed hourly: within a test only past the default bounds,
/// at shutdown, or when the operator asks.
pub fn batch_table(base: &x402_testkit::Stack) -> String {
    let channels = base.dir.path().join("gateway-channels.db");
    format!(
        "[batch_settlement]\nchannels_db = {:?}\nclaim_interval_seconds = 3600\nchain_check_interval_seconds = 300\n",
        channels.display().to_string()
    )
}

/// The bearer token of the operator's routes on a stack started [`Stack::with_batch`].
pub const OPERATOR_TOKEN: &str = "operator-secret";

/// `llm-4090` served by the OpenAI-compatible `upstream` (`http://…/v1`) as `tiny-test-model`:
/// its upstream table.
pub fn llm_upstream(upstream: &str) -> String {
    format!(
        "[services.llm-4090.upstream]\nbase_url = \"{upstream}\"\nmodel = \"tiny-test-model\"\n"
    )
}

/// The `[payment.solana]` table paying the local Solana chain's payee in its USDC.
pub fn solana_table(solana: &x402_testkit::Solana) -> String {
    let state = solana.state();
    format!(
        "[payment.solana]\nnetwork = \"{}\"\npay_to = \"{}\"\nmint = \"{}\"\n",
        state.network, state.pay_to, state.mint
    )
}

impl Stack {
    /// The stack offering `solana`'s USDC beside the devnet's, through our facilitator serving
    /// both (the Solana plug-in registered at start), called over HTTP.
    pub async fn with_solana(solana: &x402_testkit::Solana) -> Self {
        let chain = x402_testkit::Chain::start().await;
        let base = x402_testkit::serve_with_solana(chain, solana).await;
        let config = gateway_config(&base, "", &solana_table(solana));
        let remote =
            x402_paywall::HttpFacilitator::new(&base.url(), std::time::Duration::from_secs(60))
                .expect("an HTTP facilitator");
        let gateway = x402_gateway::start(&config, Some(std::sync::Arc::new(remote)))
            .await
            .expect("gateway starts");
        Self {
            url: gateway.url(),
            base,
            gateway,
            http: reqwest::Client::new(),
        }
    }

    /// The stack; `extra` is appended to the gateway's TOML (say, `[services.…]` tables).
    pub async fn start(extra: &str) -> Self {
        Self::on(x402_testkit::Stack::start().await, "", extra).await
    }

    /// The stack with its gateway keeping its state in the Postgres `database` (a URL);
    /// `extra` as for [`Self::start`].
    pub async fn with_database(database: &str, extra: &str) -> Self {
        let top = format!("database = {database:?}\n");
        Self::on(x402_testkit::Stack::start().await, &top, extra).await
    }

    /// The gateway over `base`, with `top` (top-level TOML keys) ahead of its tables and
    /// `extra` appended (its first keys land in the `[[payment.accepts]]` entry).
    async fn on(base: x402_testkit::Stack, top: &str, extra: &str) -> Self {
        let gateway_config = gateway_config(&base, top, extra);
        let gateway = x402_gateway::start(&gateway_config, Some(base.in_process()))
            .await
            .expect("gateway starts");
        Self {
            url: gateway.url(),
            base,
            gateway,
            http: reqwest::Client::new(),
        }
    }

    /// The stack offering `batch-settlement` beside `exact` (`[batch_settlement]`, channels in
    /// [`Self::channels_db`], claimed hourly: within a test only past the default bounds, at
    /// shutdown, or when the operator asks with [`OPERATOR_TOKEN`]), our facilitator holding
    /// `authorizer` as its receiver-authorizer key; `extra` as for [`Self::start`].
    pub async fn with_batch(authorizer: &PrivateKeySigner, extra: &str) -> Self {
        let chain = x402_testkit::Chain::start().await;
        let base = x402_testkit::Stack::with_receiver_authorizer(chain, authorizer).await;
        Self::with_batch_on(base, extra).await
    }

    /// [`Self::with_batch`] on `base` (a facilitator holding the receiver-authorizer key),
    /// whose folder may already hold the channel file the gateway starts on.
    pub async fn with_batch_on(base: x402_testkit::Stack, extra: &str) -> Self {
        let batch = batch_table(&base);
        let top = format!("operator_token = \"{OPERATOR_TOKEN}\"\n");
        Self::on(base, &top, &format!("{extra}\n{batch}")).await
    }

    /// Two replicas of the gateway on one stack, sharing the Postgres database at
    /// `database` (channels, jobs and the payment guard in it), offering `batch-settlement`
    /// beside `exact` (as [`Self::with_batch`], our facilitator holding `authorizer` as its
    /// receiver-authorizer key); `extra` as for [`Self::start`]. The stack, whose gateway is
    /// the first replica, and the second, started from the same config.
    pub async fn replicas(
        authorizer: &PrivateKeySigner,
        database: &str,
        extra: &str,
    ) -> (Self, RunningGateway) {
        let chain = x402_testkit::Chain::start().await;
        let base = x402_testkit::Stack::with_receiver_authorizer(chain, authorizer).await;
        let top = format!("database = {database:?}\noperator_token = \"{OPERATOR_TOKEN}\"\n");
        let config = gateway_config(&base, &top, &format!("{extra}\n{}", batch_table(&base)));
        let (first, second) = tokio::join!(
            x402_gateway::start(&config, Some(base.in_process())),
            x402_gateway::start(&config, Some(base.in_process())),
        );
        let gateway = first.expect("the first replica starts");
        let stack = Self {
            url: gateway.url(),
            base,
            gateway,
            http: reqwest::Client::new(),
        };
        (stack, second.expect("the second replica starts"))
    }

    /// `POST /operator/claim` with the operator's token: the answer, which must be 200.
    pub async fn operator_claim(&self) -> Value {
        let answer = answer(
            self.http
                .post(format!("{}/operator/claim", self.url))
                .bearer_auth(OPERATOR_TOKEN),
        )
        .await;
        assert_eq!(answer.status(), 200, "the operator's claim");
        answer.json().await.unwrap()
    }

    /// The stack with `settings` (TOML, ahead of the service tables) and `llm-4090` served by
    /// the OpenAI-compatible `upstream` (`http://…/v1`) as `tiny-test-model`.
    pub async fn with_llm_upstream(upstream: &str, settings: &str) -> Self {
        Self::start(&format!("{settings}{}", llm_upstream(upstream))).await
    }

    /// The stack offering `upto` beside `exact`, `llm-4090` at $0.001 per 1K tokens (one
    /// micro-USDC a token) from `upstream`; payer 0 has approved Permit2.
    pub async fn upto_llm(upstream: &str) -> Self {
        let stack = Self::with_llm_upstream(
            upstream,
            "upto = true\n[services.llm-4090]\nprice = \"0.001\"\n",
        )
        .await;
        let chain = &stack.base.chain;
        chain
            .devnet
            .approve_permit2(&chain.devnet.payers()[0].signer)
            .await
            .unwrap();
        stack
    }

    pub fn payer(&self, i: usize) -> &PrivateKeySigner {
        &self.base.chain.devnet.payers()[i].signer
    }

    pub fn pay_to(&self) -> Address {
        self.base.chain.devnet.pay_to().address
    }

    pub async fn pay_to_balance(&self) -> U256 {
        self.base.pay_to_balance().await
    }

    /// POSTs `body` to `path`, pays the 402 with payer `i` over `wire`, and returns the paid
    /// response and the amount the challenge asked for.
    pub async fn pay_post(
        &self,
        path: &str,
        body: &Value,
        i: usize,
        wire: Wire,
    ) -> (reqwest::Response, U256) {
        let first = self.post_json(path, body).await;
        assert_eq!(first.status(), 402, "{path} should ask for payment first");
        let amount = x402_testkit::challenge_of(first.headers()).accepts[0]
            .amount
            .0;
        let url = format!("{}{path}", self.url);
        let paid =
            x402_testkit::pay_and_retry(|| self.http.post(&url).json(body), self.payer(i), wire)
                .await;
        (paid, amount)
    }

    /// POSTs `body` to `path` unpaid and signs, as payer `i` with our `upto` plug-in, a
    /// payment of the challenge's `upto` offer: the `PAYMENT-SIGNATURE` value and the maximum
    /// signed. The payer must have approved Permit2.
    pub async fn upto_payment(&self, path: &str, body: &Value, i: usize) -> (String, U256) {
        self.upto_payment_signed_at(path, body, i, x402_evm::unix_now())
            .await
    }

    /// [`Self::upto_payment`], signed as at Unix second `now`: its Permit2 deadline is the
    /// offer's timeout after `now` (an earlier `now` signs a shorter deadline).
    pub async fn upto_payment_signed_at(
        &self,
        path: &str,
        body: &Value,
        i: usize,
        now: u64,
    ) -> (String, U256) {
        use x402_proto::SchemeClient as _;
        let first = self.post_json(path, body).await;
        assert_eq!(first.status(), 402, "{path} should ask for payment first");
        let challenge = x402_testkit::challenge_of(first.headers());
        let offer = challenge
            .accepts
            .iter()
            .find(|offer| offer.scheme == x402_proto::Scheme::UPTO)
            .expect("the challenge offers upto")
            .clone();
        let signed = x402_evm::upto::UptoEvmClient::new(self.payer(i).clone())
            .sign(&offer, now)
            .await
            .expect("signs");
        let maximum = offer.amount.0;
        let payment = x402_proto::v2::PaymentPayload {
            x402_version: x402_proto::V2::default(),
            resource: Some(challenge.resource),
            accepted: offer,
            payload: signed.payload,
            extensions: signed.extensions,
        };
        (x402_proto::encode_header(&payment), maximum)
    }

    /// POSTs the JSON `body` to `path` with the `PAYMENT-SIGNATURE` `payment`: the answer, its
    /// body not yet read.
    pub async fn post_paid(&self, path: &str, body: &Value, payment: &str) -> reqwest::Response {
        answer(
            self.http
                .post(format!("{}{path}", self.url))
                .header("PAYMENT-SIGNATURE", payment)
                .json(body),
        )
        .await
    }

    /// Pays for `request` to `/run` as a job (`Prefer: respond-async`) with payer 0: the job
    /// id and the receipt of the settlement made before it started.
    pub async fn pay_job(&self, request: &Value) -> (String, x402_proto::SettleResponse) {
        let url = format!("{}/run", self.url);
        let build = || {
            self.http
                .post(&url)
                .header("prefer", "respond-async")
                .json(request)
        };
        let response = x402_testkit::pay_and_retry(build, self.payer(0), Wire::V2).await;
        assert_eq!(response.status(), 202);
        let receipt = x402_testkit::receipt_of(response.headers()).expect("settled before the job");
        let accepted: Value = response.json().await.unwrap();
        assert_eq!(accepted["status"], "pending");
        (accepted["job_id"].as_str().unwrap().to_owned(), receipt)
    }

    /// Polls `/status/{job_id}` until the job completes or fails (or 10 s pass): its last view.
    pub async fn job_outcome(&self, job_id: &str) -> Value {
        let mut view = Value::Null;
        for _ in 0..100 {
            view = self.get_json(&format!("/status/{job_id}")).await;
            if view["status"] == "failed" || view["status"] == "completed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        view
    }

    /// GETs `path` and reads its JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        x402_testkit::fetch_json(self.http.get(format!("{}{path}", self.url))).await
    }

    /// GETs `path`, unpaid: the answer.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        answer(self.http.get(format!("{}{path}", self.url))).await
    }

    /// POSTs the JSON `body` to `path`, unpaid: the answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        answer(self.http.post(format!("{}{path}", self.url)).json(body)).await
    }

    /// POSTs the raw `body` (perhaps not JSON at all) to `path`, unpaid: the answer.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        answer(self.http.post(format!("{}{path}", self.url)).body(body)).await
    }

    /// Pays for `service` on `/run` with `input`, as payer `i` with a v2 client: the paid
    /// response and the amount asked.
    pub async fn pay_run(
        &self,
        service: &str,
        input: Value,
        i: usize,
    ) -> (reqwest::Response, U256) {
        let body = serde_json::json!({"service": service, "input": input});
        self.pay_post("/run", &body, i, Wire::V2).await
    }
}

async fn answer(request: reqwest::RequestBuilder) -> reqwest::Response {
    request.send().await.expect("the gateway answers")
}

/// The receipt a metered event stream ends with (its last [`x402_paywall::RECEIPT_EVENT`]), and
/// the events before it; `None` when it has none.
pub fn receipt_in_stream(events: &str) -> Option<(&str, x402_proto::SettleResponse)> {
    let marker = format!("event: {}\ndata: ", x402_paywall::RECEIPT_EVENT);
    let (before, data) = events.rsplit_once(&marker)?;
    let receipt = x402_proto::decode_header(data.trim_end().as_bytes()).expect("receipt decodes");
    Some((before, receipt))
}

/// A one-page A4 PDF with `line` in 28-point Helvetica near the top (a font every PDF
/// renderer has).
pub fn one_page_pdf(line: &str) -> Vec<u8> {
    pdf_of_pages(&[line])
}

/// An A4 PDF with one page per entry of `lines`, each line in 28-point Helvetica near the top
/// of its page.
pub fn pdf_of_pages(lines: &[&str]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let resources_id = doc.add_object(dictionary! {
        "Font" => dictionary! { "F1" => font_id },
    });
    let kids: Vec<Object> = lines
        .iter()
        .map(|line| {
            let content = Content {
                operations: vec![
                    Operation::new("BT", vec![]),
                    Operation::new("Tf", vec!["F1".into(), 28.into()]),
                    Operation::new("Td", vec![60.into(), 700.into()]),
                    Operation::new("Tj", vec![Object::string_literal(*line)]),
                    Operation::new("ET", vec![]),
                ],
            };
            let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
            doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content_id,
            })
            .into()
        })
        .collect();
    let pages = dictionary! {
        "Type" => "Pages",
        "Count" => kids.len() as i64,
        "Kids" => kids,
        "Resources" => resources_id,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    };
    doc.objects.insert(pages_id, Object::Dictionary(pages));
    let catalog_id = doc.add_object(dictionary! {
        "Type" => "Catalog",
        "Pages" => pages_id,
    });
    doc.trailer.set("Root", catalog_id);
    let mut pdf = Vec::new();
    doc.save_to(&mut pdf).unwrap();
    pdf
}

/// The first page of `pdf` as a PNG at 150 dpi, rendered by poppler's `pdftoppm` (Debian
/// poppler-utils, installed by scripts/install-system-deps.sh).
pub fn render_png(pdf: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pdf");
    std::fs::write(&input, pdf).unwrap();
    let status = std::process::Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(&input)
        .arg(dir.path().join("page"))
        .status()
        .expect("pdftoppm runs (poppler-utils: scripts/install-system-deps.sh)");
    assert!(status.success());
    std::fs::read(dir.path().join("page.png")).unwrap()
}

/// A neutral picture (a white card with grey lines of "text" on a blue background) as PNG.
pub fn neutral_png() -> Vec<u8> {
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        let card = (80..560).contains(&x) && (60..420).contains(&y);
        let line =
            card && (100..380).contains(&y) && y % 40 < 12 && (120..(520 - y % 80)).contains(&x);
        match (card, line) {
            (_, true) => image::Rgb([70, 70, 80]),
            (true, false) => image::Rgb([250, 250, 245]),
            _ => image::Rgb([30, 80, 170]),
        }
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// `bytes` in base64.
pub fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
