//! Document to text: PDF (pdf-extract, falling back to lopdf), DOCX (docx-rs), HTML
//! (html2text). Parsers of untrusted files run isolated from panics.

use serde::Serialize;

use super::BackendError;

/// A document format this backend reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// PDF.
    Pdf,
    /// Word (Office Open XML).
    Docx,
    /// HTML.
    Html,
}

impl Format {
    /// The format of `bytes`, from their first bytes, else from the declared name or media
    /// type. `None` when it is none of the three.
    pub fn detect(bytes: &[u8], declared: Option<&str>) -> Option<Self> {
        if bytes.starts_with(b"%PDF-") {
            return Some(Self::Pdf);
        }
        if bytes.starts_with(b"PK\x03\x04") {
            // A zip: DOCX when it holds the Word main part.
            return contains(bytes, b"word/document.xml").then_some(Self::Docx);
        }
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).to_ascii_lowercase();
        let head = head.trim_start_matches('\u{feff}').trim_start();
        if head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<body")
        {
            return Some(Self::Html);
        }
        match declared.map(str::to_ascii_lowercase) {
            Some(d) if d.ends_with("html") || d.ends_with(".htm") => Some(Self::Html),
            _ => None,
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The text of a document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Parsed {
    /// All text, pages separated by a form feed for PDFs.
    pub text: String,
    /// The page count (PDF); 1 for other formats.
    pub pages: usize,
    /// What was read.
    pub format: Format,
    /// Characters of text.
    pub characters: usize,
}

/// Extracts the text of `bytes` in `format`.
pub fn parse(bytes: &[u8], format: Format) -> Result<Parsed, BackendError> {
    let (text, pages) = match format {
        Format::Pdf => pdf(bytes)?,
        Format::Docx => (docx(bytes)?, 1),
        Format::Html => (html(bytes)?, 1),
    };
    let text = text.trim().to_owned();
    Ok(Parsed {
        characters: text.chars().count(),
        text,
        pages,
        format,
    })
}

/// Pages of a PDF, read from its page tree without extracting text (for pricing).
pub fn pdf_pages(bytes: &[u8]) -> Result<usize, BackendError> {
    let document = lopdf::Document::load_mem(bytes)
        .map_err(|e| BackendError::BadInput(format!("not a readable PDF: {e}")))?;
    Ok(document.get_pages().len())
}

fn pdf(bytes: &[u8]) -> Result<(String, usize), BackendError> {
    let pages = pdf_pages(bytes)?;
    // pdf-extract is thorough but has panicked on malformed files in the past.
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes));
    match extracted {
        Ok(Ok(texts)) => {
            let texts: Vec<String> = texts.into_iter().map(|t| t.trim().to_owned()).collect();
            Ok((texts.join("\n\u{c}\n"), pages))
        }
        outcome => {
            let why = match outcome {
                Ok(Err(error)) => error.to_string(),
                _ => "the parser panicked".to_owned(),
            };
            tracing::debug!(%why, "pdf-extract failed; falling back to lopdf");
            let document = lopdf::Document::load_mem(bytes)
                .map_err(|e| BackendError::BadInput(format!("not a readable PDF: {e}")))?;
            let numbers: Vec<u32> = document.get_pages().keys().copied().collect();
            let text = document.extract_text(&numbers).map_err(|e| {
                BackendError::BadInput(format!("no text could be read from this PDF: {why}; {e}"))
            })?;
            Ok((text, pages))
        }
    }
}

fn docx(bytes: &[u8]) -> Result<String, BackendError> {
    use docx_rs::{DocumentChild, ParagraphChild, RunChild};
    let document = std::panic::catch_unwind(|| docx_rs::read_docx(bytes))
        .map_err(|_| BackendError::BadInput("not a readable DOCX (the parser failed)".into()))?
        .map_err(|e| BackendError::BadInput(format!("not a readable DOCX: {e}")))?;
    let mut paragraphs = Vec::new();
    for child in &document.document.children {
        if let DocumentChild::Paragraph(paragraph) = child {
            let mut line = String::new();
            for child in &paragraph.children {
                if let ParagraphChild::Run(run) = child {
                    for child in &run.children {
                        match child {
                            RunChild::Text(text) => line.push_str(&text.text),
                            RunChild::Tab(_) => line.push('\t'),
                            RunChild::Break(_) => line.push('\n'),
                            _ => {}
                        }
                    }
                }
            }
            paragraphs.push(line);
        }
    }
    Ok(paragraphs.join("\n"))
}

fn html(bytes: &[u8]) -> Result<String, BackendError> {
    html2text::from_read(bytes, 100)
        .map_err(|e| BackendError::BadInput(format!("not readable HTML: {e}")))
}

// ---------------------------------------------------------------------------------------
// The pdf-parse service: input, billing units, run.

/// A document to read, checked to be one of the three formats: billed per document.
#[derive(Debug)]
pub struct ParseJob {
    /// The file.
    pub bytes: Vec<u8>,
    /// Its format.
    pub format: Format,
}

impl ParseJob {
    /// Reads `input.html` or the base64 file in `input.file_base64` (or `document_base64`,
    /// `data_base64`), named by `input.filename` / `input.content_type`. An unreadable PDF is
    /// refused here, before payment.
    pub fn prepare(input: &serde_json::Value) -> Result<Self, x402_paywall::Rejection> {
        use super::input::{bad, off_the_async_workers};
        let (bytes, declared) = document_bytes(input)?;
        let format = Format::detect(&bytes, declared.as_deref()).ok_or_else(|| {
            bad("the document is not a PDF, DOCX or HTML file (checked by its first bytes)")
        })?;
        if format == Format::Pdf {
            off_the_async_workers(|| pdf_pages(&bytes)).map_err(|e| bad(e.to_string()))?;
        }
        Ok(Self { bytes, format })
    }

    /// Extracts the text (call on the blocking pool).
    pub fn run(&self) -> Result<Parsed, BackendError> {
        parse(&self.bytes, self.format)
    }
}

fn document_bytes(
    input: &serde_json::Value,
) -> Result<(Vec<u8>, Option<String>), x402_paywall::Rejection> {
    use super::input::{bad, string_field};
    use base64::Engine;
    let declared = string_field(input, "filename")?
        .or(string_field(input, "content_type")?)
        .map(str::to_owned);
    if let Some(html) = string_field(input, "html")? {
        return Ok((html.as_bytes().to_vec(), Some("text/html".to_owned())));
    }
    for field in ["file_base64", "document_base64", "data_base64"] {
        if let Some(encoded) = string_field(input, field)? {
            let encoded = encoded
                .split_once(";base64,")
                .map_or(encoded, |(_, data)| data)
                .trim();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| bad(format!("input.{field} is not valid base64: {e}")))?;
            if bytes.is_empty() {
                return Err(bad(format!("input.{field} is empty")));
            }
            return Ok((bytes, declared));
        }
    }
    if input.get("url").is_some() || input.get("file_url").is_some() {
        return Err(bad(
            "documents by URL are not fetched by this gateway; send the file as input.file_base64",
        ));
    }
    Err(bad(
        "input.file_base64 (a base64 PDF, DOCX or HTML file) or input.html is required",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn reads_a_pdf() {
        let bytes = testdata("hello.pdf");
        assert_eq!(Format::detect(&bytes, None), Some(Format::Pdf));
        let parsed = parse(&bytes, Format::Pdf).unwrap();
        assert_eq!(parsed.pages, 1);
        assert!(
            parsed.text.contains("Invoice 4021 from Example Compute"),
            "{parsed:?}"
        );
        assert!(parsed.text.contains("Total due: 12.50 USDC"), "{parsed:?}");
    }

    #[test]
    fn reads_pdf_pages_in_order() {
        let bytes = testdata("two-pages.pdf");
        assert_eq!(pdf_pages(&bytes).unwrap(), 2);
        let parsed = parse(&bytes, Format::Pdf).unwrap();
        let first = parsed.text.find("First page about embeddings").unwrap();
        let second = parsed.text.find("Second page about settlement").unwrap();
        assert!(first < second, "{parsed:?}");
    }

    #[test]
    fn reads_docx_and_html() {
        let bytes = testdata("hello.docx");
        assert_eq!(Format::detect(&bytes, None), Some(Format::Docx));
        let parsed = parse(&bytes, Format::Docx).unwrap();
        assert_eq!(parsed.text, "Quarterly report\nRevenue grew by 40 percent");

        let bytes = testdata("hello.html");
        assert_eq!(Format::detect(&bytes, None), Some(Format::Html));
        let parsed = parse(&bytes, Format::Html).unwrap();
        assert!(parsed.text.contains("Pricing"), "{parsed:?}");
        assert!(
            parsed
                .text
                .contains("Embeddings cost one cent per thousand calls.")
        );
        assert!(
            !parsed.text.contains("SCRIPT_TEXT_MUST_NOT_APPEAR"),
            "{parsed:?}"
        );
    }

    #[test]
    fn garbage_is_bad_input_not_a_panic() {
        assert_eq!(Format::detect(b"hello there", None), None);
        let error = parse(b"%PDF-1.4 this is not really a pdf", Format::Pdf).unwrap_err();
        assert!(matches!(error, BackendError::BadInput(_)), "{error:?}");
        let error = parse(b"PK\x03\x04word/document.xml broken", Format::Docx).unwrap_err();
        assert!(matches!(error, BackendError::BadInput(_)), "{error:?}");
    }
}
