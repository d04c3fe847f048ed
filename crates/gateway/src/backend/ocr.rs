//! Optical character recognition with tesseract (Debian `tesseract-ocr` + `tesseract-ocr-eng`)
//! run as a subprocess on PNG and JPEG images and on PDF pages (rendered by poppler's
//! `pdftoppm`): the text, and each line with its box and confidence, read from tesseract's TSV
//! output. Each tesseract runs single-threaded (`OMP_THREAD_LIMIT=1`), as many at once as
//! there are cores, each within a time limit.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::{BackendError, ProgressFn};

use super::image_input::{FileKind, decode_image, input_file};

/// The tesseract and pdftoppm programs, if they run here.
#[derive(Clone, Debug)]
pub struct Tesseract {
    program: String,
    pdftoppm: String,
    version: String,
    languages: Vec<String>,
    /// One permit per tesseract running.
    running: Arc<Semaphore>,
}

/// The longest one page may take.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(90);
/// Resolution PDF pages are rendered at.
pub const PDF_DPI: u32 = 200;
/// The most pages one request may have.
pub const MAX_PAGES: usize = 100;
/// Requests with more pages than this run as jobs.
pub const JOB_OVER_PAGES: usize = 4;

/// A box in pixels of the page image, from its top left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bounds {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// One line of recognised text.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Line {
    /// The words of the line, separated by spaces.
    pub text: String,
    /// Tesseract's mean word confidence, 0 to 100.
    pub confidence: f32,
    /// Where the line is.
    #[serde(rename = "box")]
    pub bounds: Bounds,
}

/// One page read.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Page {
    /// The page number, from 1.
    pub page: usize,
    /// The page image's size in pixels.
    pub width: u32,
    /// The page image's height in pixels.
    pub height: u32,
    /// The page's text: lines separated by newlines, paragraphs by an empty line.
    pub text: String,
    /// Each line with its box.
    pub lines: Vec<Line>,
}

impl Tesseract {
    /// Finds `tesseract` and `pdftoppm` on PATH and the languages tesseract has; `Err` says
    /// how to install what is missing.
    pub async fn detect() -> Result<Self, BackendError> {
        let program = "tesseract";
        let missing = |e: std::io::Error| {
            BackendError::Unavailable(format!(
                "{program} is not installed ({e}); install the Debian packages tesseract-ocr and \
                 tesseract-ocr-eng (scripts/install-system-deps.sh)"
            ))
        };
        let output = tokio::process::Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(missing)?;
        let version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let listed = tokio::process::Command::new(program)
            .arg("--list-langs")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(missing)?;
        let languages: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .skip(1)
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty() && l != "osd")
            .collect();
        if languages.is_empty() {
            return Err(BackendError::Unavailable(
                "tesseract has no language data; install the Debian package tesseract-ocr-eng"
                    .into(),
            ));
        }
        let pdftoppm = "pdftoppm";
        tokio::process::Command::new(pdftoppm)
            .arg("-v")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                BackendError::Unavailable(format!(
                    "{pdftoppm} is not installed ({e}); install the Debian package poppler-utils \
                     (scripts/install-system-deps.sh)"
                ))
            })?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            program: program.to_owned(),
            pdftoppm: pdftoppm.to_owned(),
            version: if version.is_empty() {
                "tesseract".to_owned()
            } else {
                version
            },
            languages,
            running: Arc::new(Semaphore::new(cores)),
        })
    }

    /// Its version (`tesseract 5.3.0`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The languages it reads (`eng`, …).
    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    /// Reads one PNG or JPEG image.
    pub async fn read_image(&self, image: &[u8], language: &str) -> Result<Page, BackendError> {
        let _permit = self.running.acquire().await.map_err(|_| closed())?;
        let tsv = self.tesseract_tsv(image, language).await?;
        parse_tsv(&tsv, 1)
    }

    /// Renders each page of a PDF and reads it, in page order, telling `progress` (pages read,
    /// pages in all) before the first page and after each.
    pub async fn read_pdf(
        &self,
        pdf: &[u8],
        pages: usize,
        language: &str,
        progress: &mut (dyn FnMut(usize, usize) + Send),
    ) -> Result<Vec<Page>, BackendError> {
        let dir = tempfile::tempdir()
            .map_err(|e| BackendError::Failed(format!("cannot make a temporary folder: {e}")))?;
        let input = dir.path().join("input.pdf");
        tokio::fs::write(&input, pdf)
            .await
            .map_err(|e| BackendError::Failed(format!("cannot write the PDF: {e}")))?;
        let mut read = Vec::with_capacity(pages);
        progress(0, pages);
        for number in 1..=pages {
            let png = self.render_page(&input, dir.path(), number).await?;
            let _permit = self.running.acquire().await.map_err(|_| closed())?;
            let tsv = self.tesseract_tsv(&png, language).await?;
            read.push(parse_tsv(&tsv, number)?);
            progress(number, pages);
        }
        Ok(read)
    }

    /// One page of `pdf` as a grey PNG at [`PDF_DPI`].
    async fn render_page(
        &self,
        pdf: &Path,
        dir: &Path,
        number: usize,
    ) -> Result<Vec<u8>, BackendError> {
        let root = dir.join(format!("page-{number}"));
        let page = number.to_string();
        let dpi = PDF_DPI.to_string();
        let child = tokio::process::Command::new(&self.pdftoppm)
            .args(["-q", "-gray", "-png", "-singlefile", "-r", &dpi])
            .args(["-f", &page, "-l", &page])
            .arg(pdf)
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackendError::Unavailable(format!("cannot run pdftoppm: {e}")))?;
        let output = tokio::time::timeout(PAGE_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                BackendError::Failed(format!(
                    "pdftoppm took more than {PAGE_TIMEOUT:?} on page {number}"
                ))
            })?
            .map_err(|e| BackendError::Failed(format!("pdftoppm failed: {e}")))?;
        let png = root.with_extension("png");
        if !output.status.success() || !png.is_file() {
            return Err(BackendError::BadInput(format!(
                "page {number} of the PDF cannot be rendered: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let bytes = tokio::fs::read(&png)
            .await
            .map_err(|e| BackendError::Failed(format!("cannot read the rendered page: {e}")))?;
        let _ = tokio::fs::remove_file(&png).await;
        Ok(bytes)
    }

    /// `tesseract stdin stdout tsv` on `image`, single-threaded, within [`PAGE_TIMEOUT`].
    async fn tesseract_tsv(&self, image: &[u8], language: &str) -> Result<String, BackendError> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(["stdin", "stdout", "-l", language, "--psm", "3", "tsv"])
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BackendError::Unavailable(format!("cannot run tesseract: {e}")))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let input = image.to_vec();
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
        let output = tokio::time::timeout(PAGE_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                BackendError::Failed(format!("tesseract took more than {PAGE_TIMEOUT:?}"))
            })?
            .map_err(|e| BackendError::Failed(format!("tesseract failed: {e}")))?;
        let _ = writer.await;
        if !output.status.success() {
            return Err(BackendError::Failed(format!(
                "tesseract exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        String::from_utf8(output.stdout)
            .map_err(|_| BackendError::Failed("tesseract wrote text that is not UTF-8".into()))
    }
}

fn closed() -> BackendError {
    BackendError::Unavailable("OCR is shutting down".into())
}

/// Reads tesseract's TSV (`level page_num block_num par_num line_num word_num left top width
/// height conf text`): level 1 rows give the page size, level 4 rows each line's box, level 5
/// rows its words.
pub fn parse_tsv(tsv: &str, page: usize) -> Result<Page, BackendError> {
    let bad = || BackendError::Failed("tesseract wrote TSV in an unexpected shape".into());
    let mut read = Page {
        page,
        width: 0,
        height: 0,
        text: String::new(),
        lines: Vec::new(),
    };
    // (block, paragraph) of each line, to separate paragraphs in the text.
    let mut paragraphs: Vec<(u32, u32)> = Vec::new();
    let mut confidences: Vec<Vec<f32>> = Vec::new();
    for row in tsv.lines().skip(1) {
        let fields: Vec<&str> = row.splitn(12, '\t').collect();
        if fields.len() < 11 {
            continue;
        }
        let number = |i: usize| fields[i].trim().parse::<u32>().map_err(|_| bad());
        let level = number(0)?;
        let bounds = Bounds {
            x: number(6)?,
            y: number(7)?,
            width: number(8)?,
            height: number(9)?,
        };
        match level {
            1 => {
                read.width = bounds.width;
                read.height = bounds.height;
            }
            4 => {
                read.lines.push(Line {
                    text: String::new(),
                    confidence: 0.0,
                    bounds,
                });
                paragraphs.push((number(2)?, number(3)?));
                confidences.push(Vec::new());
            }
            5 => {
                let word = fields.get(11).map_or("", |w| w.trim());
                let confidence: f32 = fields[10].trim().parse().map_err(|_| bad())?;
                let (Some(line), Some(confs)) = (read.lines.last_mut(), confidences.last_mut())
                else {
                    return Err(bad());
                };
                if word.is_empty() {
                    continue;
                }
                if !line.text.is_empty() {
                    line.text.push(' ');
                }
                line.text.push_str(word);
                confs.push(confidence.max(0.0));
            }
            _ => {}
        }
    }
    let mut kept = Vec::new();
    let mut previous = None;
    for ((mut line, paragraph), confs) in read.lines.into_iter().zip(paragraphs).zip(confidences) {
        if line.text.is_empty() {
            continue;
        }
        line.confidence = (confs.iter().sum::<f32>() / confs.len() as f32 * 10.0).round() / 10.0;
        if let Some(previous) = previous {
            read.text
                .push_str(if previous == paragraph { "\n" } else { "\n\n" });
        }
        read.text.push_str(&line.text);
        previous = Some(paragraph);
        kept.push(line);
    }
    read.lines = kept;
    Ok(read)
}

// ---------------------------------------------------------------------------------------
// The ocr-l4 service: input, billing units, run.

/// What to read: one image, or the pages of a PDF. Billed per page (an image is one page).
pub struct OcrJob {
    /// The file.
    pub bytes: Vec<u8>,
    /// PNG, JPEG or PDF.
    pub kind: FileKind,
    /// Pages: 1 for an image, counted for a PDF.
    pub pages: usize,
    /// The tesseract language (`eng`).
    pub language: String,
    /// Where the job reports its progress (pages read, pages in all), when it runs as one.
    progress: Mutex<Option<ProgressFn>>,
}

impl std::fmt::Debug for OcrJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcrJob")
            .field("bytes", &self.bytes.len())
            .field("kind", &self.kind)
            .field("pages", &self.pages)
            .field("language", &self.language)
            .finish()
    }
}

impl OcrJob {
    /// Reads the image (`input.image_base64`, `input.image_url` as a `data:` URL, or a PDF in
    /// `input.file_base64`) and `input.language`; decodes an image (or counts a PDF's pages) so
    /// that a corrupt file is refused before payment.
    pub fn prepare(
        input: &serde_json::Value,
        ocr: &Result<Tesseract, String>,
        limits: &crate::config::GatewayLimits,
    ) -> Result<Self, x402_paywall::Rejection> {
        use super::input::{bad, off_the_async_workers, string_field};
        let languages = ocr
            .as_ref()
            .map(|o| o.languages().to_vec())
            .unwrap_or_default();
        let language = match string_field(input, "language")?.or(string_field(input, "lang")?) {
            None => "eng".to_owned(),
            Some(asked) => {
                let asked = match asked.trim().to_ascii_lowercase().as_str() {
                    "en" | "english" => "eng".to_owned(),
                    other => other.to_owned(),
                };
                if !languages.contains(&asked) {
                    return Err(bad(format!(
                        "input.language {asked:?} is not installed here; languages: {}",
                        languages.join(", ")
                    ))
                    .with("languages", languages));
                }
                asked
            }
        };
        let bytes = input_file(input, limits.max_body_bytes)?;
        let kind = FileKind::sniff(&bytes).ok_or_else(|| {
            bad("the file is not a PNG, JPEG or PDF (checked by its first bytes)")
        })?;
        let pages = match kind {
            FileKind::Pdf => {
                let pages = off_the_async_workers(|| super::documents::pdf_pages(&bytes))
                    .map_err(|e| bad(e.to_string()))?;
                if pages == 0 {
                    return Err(bad("the PDF has no pages"));
                }
                if pages > MAX_PAGES {
                    return Err(bad(format!(
                        "the PDF has {pages} pages; at most {MAX_PAGES} per request"
                    )));
                }
                pages
            }
            FileKind::Png | FileKind::Jpeg => {
                off_the_async_workers(|| decode_image(&bytes, kind))?;
                1
            }
        };
        Ok(Self {
            bytes,
            kind,
            pages,
            language,
            progress: Mutex::new(None),
        })
    }

    /// Where to report progress (pages read, pages in all) when it runs.
    pub fn report_progress(&self, progress: ProgressFn) {
        *self.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(progress);
    }

    /// Whether it is long enough to run as a job.
    pub fn is_long(&self) -> bool {
        self.pages > JOB_OVER_PAGES
    }

    /// Reads the file: the text (pages separated by a form feed) and each page's lines.
    pub async fn run(&self, ocr: &Tesseract) -> Result<serde_json::Value, BackendError> {
        let mut report = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut progress = |done: usize, total: usize| {
            if let Some(report) = report.as_mut() {
                report(done, total);
            }
        };
        let pages = match self.kind {
            FileKind::Pdf => {
                ocr.read_pdf(&self.bytes, self.pages, &self.language, &mut progress)
                    .await?
            }
            FileKind::Png | FileKind::Jpeg => {
                vec![ocr.read_image(&self.bytes, &self.language).await?]
            }
        };
        let text = pages
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\u{c}\n");
        Ok(serde_json::json!({
            "text": text,
            "pages": pages,
            "page_count": pages.len(),
            "language": self.language,
            "model": ocr.version(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_becomes_lines_with_boxes_and_paragraphs() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
            1\t1\t0\t0\t0\t0\t0\t0\t800\t600\t-1\t\n\
            2\t1\t1\t0\t0\t0\t10\t10\t300\t60\t-1\t\n\
            3\t1\t1\t1\t0\t0\t10\t10\t300\t60\t-1\t\n\
            4\t1\t1\t1\t1\t0\t10\t10\t300\t20\t-1\t\n\
            5\t1\t1\t1\t1\t1\t10\t10\t100\t20\t96.5\tHello\n\
            5\t1\t1\t1\t1\t2\t120\t10\t100\t20\t93.5\tworld\n\
            4\t1\t1\t1\t2\t0\t10\t40\t300\t20\t-1\t\n\
            5\t1\t1\t1\t2\t1\t10\t40\t100\t20\t90\tagain\n\
            4\t1\t1\t2\t1\t0\t10\t80\t300\t20\t-1\t\n\
            5\t1\t1\t2\t1\t1\t10\t80\t100\t20\t-1\t \n\
            3\t1\t2\t1\t0\t0\t10\t200\t300\t20\t-1\t\n\
            4\t1\t2\t1\t1\t0\t10\t200\t300\t20\t-1\t\n\
            5\t1\t2\t1\t1\t1\t10\t200\t90\t20\t80\tBye\n";
        let page = parse_tsv(tsv, 3).unwrap();
        assert_eq!((page.page, page.width, page.height), (3, 800, 600));
        assert_eq!(page.text, "Hello world\nagain\n\nBye");
        assert_eq!(page.lines.len(), 3);
        assert_eq!(page.lines[0].text, "Hello world");
        assert_eq!(page.lines[0].confidence, 95.0);
        assert_eq!(
            page.lines[0].bounds,
            Bounds {
                x: 10,
                y: 10,
                width: 300,
                height: 20
            }
        );
        assert_eq!(page.lines[2].bounds.y, 200);
        assert!(parse_tsv("header\nx\ty\tz\ta\tb\tc\td\te\tf\tg\th\n", 1).is_err());
    }
}
