//! The `ac-discovery` and `ac-discovery-pubkeys` meta tags of a discovery document, read
//! with the html5ever tokenizer (no tree, no regexes).
//!
//! Only start tags named `meta` count. The text of `script`, `style` and the other raw
//! text elements (`textarea`, `title`, `xmp`, `iframe`, `noembed`, `noframes`,
//! `noscript`, `plaintext`) is not markup, as for the Go reference's tokenizer, so a
//! `<meta>` written inside them is ignored; so are tags in comments. Malformed HTML
//! never fails: the tokenizer recovers as browsers do.

use std::cell::RefCell;

use html5ever::TokenizerResult;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, StartTag, TagToken, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

/// Which tag a [`MetaTag`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKind {
    /// `<meta name="ac-discovery" content="PREFIX TEMPLATE">`.
    Discovery,
    /// `<meta name="ac-discovery-pubkeys" content="PREFIX URL">`.
    Pubkeys,
}

/// One discovery meta tag, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaTag {
    /// Which tag it is.
    pub kind: MetaKind,
    /// The prefix the image name must start with.
    pub prefix: String,
    /// The URL template (`ac-discovery`) or the key URL (`ac-discovery-pubkeys`).
    pub url: String,
}

/// Every discovery meta tag of `html`, in document order. A tag whose `content` is not
/// exactly two whitespace-separated fields (prefix and URL) is skipped.
pub fn extract(html: &str) -> Vec<MetaTag> {
    let sink = Sink {
        tags: RefCell::new(Vec::new()),
    };
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    while let TokenizerResult::Script(()) = tokenizer.feed(&input) {}
    tokenizer.end();
    tokenizer.sink.tags.into_inner()
}

struct Sink {
    tags: RefCell<Vec<MetaTag>>,
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let TagToken(tag) = token else {
            return TokenSinkResult::Continue;
        };
        if tag.kind != StartTag {
            return TokenSinkResult::Continue;
        }
        match &*tag.name {
            "meta" => {
                let attr = |name: &str| {
                    tag.attrs
                        .iter()
                        .find(|a| &*a.name.local == name)
                        .map(|a| a.value.to_string())
                };
                let kind = match attr("name") {
                    Some(n) if n.trim().eq_ignore_ascii_case("ac-discovery") => MetaKind::Discovery,
                    Some(n) if n.trim().eq_ignore_ascii_case("ac-discovery-pubkeys") => {
                        MetaKind::Pubkeys
                    }
                    _ => return TokenSinkResult::Continue,
                };
                let content = attr("content").unwrap_or_default();
                let fields: Vec<&str> = content.split_ascii_whitespace().collect();
                if let [prefix, url] = fields[..] {
                    self.tags.borrow_mut().push(MetaTag {
                        kind,
                        prefix: prefix.to_string(),
                        url: url.to_string(),
                    });
                }
                TokenSinkResult::Continue
            }
            "script" if !tag.self_closing => TokenSinkResult::RawData(RawKind::ScriptData),
            "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript"
                if !tag.self_closing =>
            {
                TokenSinkResult::RawData(RawKind::Rawtext)
            }
            "textarea" | "title" if !tag.self_closing => TokenSinkResult::RawData(RawKind::Rcdata),
            "plaintext" => TokenSinkResult::Plaintext,
            _ => TokenSinkResult::Continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(html: &str) -> Vec<(MetaKind, String, String)> {
        extract(html)
            .into_iter()
            .map(|t| (t.kind, t.prefix, t.url))
            .collect()
    }

    #[test]
    fn finds_both_tags_in_order() {
        let html = r#"<!DOCTYPE html><html><head>
            <meta name="ac-discovery-pubkeys" content="example.com https://example.com/pubkeys.gpg">
            <meta charset="utf-8">
            <META NAME="AC-Discovery" CONTENT="example.com   https://example.com/{name}-{version}.{ext}"/>
            <meta name="ac-discovery" content="example.com/app hdfs://h/{name}.{ext}">
            </head><body></body></html>"#;
        assert_eq!(
            urls(html),
            vec![
                (
                    MetaKind::Pubkeys,
                    "example.com".into(),
                    "https://example.com/pubkeys.gpg".into()
                ),
                (
                    MetaKind::Discovery,
                    "example.com".into(),
                    "https://example.com/{name}-{version}.{ext}".into()
                ),
                (
                    MetaKind::Discovery,
                    "example.com/app".into(),
                    "hdfs://h/{name}.{ext}".into()
                ),
            ]
        );
    }

    #[test]
    fn ignores_raw_text_and_comments() {
        let html = r#"<html><head>
            <script>document.write('<meta name="ac-discovery" content="a https://script/{ext}">')</script>
            <style>/* <meta name="ac-discovery" content="a https://style/{ext}"> */</style>
            <title><meta name="ac-discovery" content="a https://title/{ext}"></title>
            <!-- <meta name="ac-discovery" content="a https://comment/{ext}"> -->
            <textarea><meta name="ac-discovery" content="a https://textarea/{ext}"></textarea>
            <meta name="ac-discovery" content="a https://real/{ext}">
            </head></html>"#;
        assert_eq!(
            urls(html),
            vec![(MetaKind::Discovery, "a".into(), "https://real/{ext}".into())]
        );
    }

    #[test]
    fn skips_bad_content_and_survives_malformed_html() {
        let html = "<meta name=ac-discovery content='only-one-field'>\
            <meta name=ac-discovery content='a b c'>\
            <meta name=ac-discovery>\
            <meta content='x https://no-name/{ext}'>\
            <div <<< id=\"x\"><p>unclosed <b>\u{0}\
            <meta name=ac-discovery content=\"x https://after-junk/{ext}\"\
            ><meta name=\"ac-discovery-pubkeys\" content=\"x https://k\"";
        assert_eq!(
            urls(html),
            vec![(
                MetaKind::Discovery,
                "x".into(),
                "https://after-junk/{ext}".into()
            )],
            "the last tag is cut off by the end of input"
        );
        assert!(extract("").is_empty());
        assert!(extract("<script>never closed <meta name=ac-discovery content='a b'>").is_empty());
    }
}
