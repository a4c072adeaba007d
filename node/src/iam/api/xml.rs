//! Responses of the query protocol: `<ActionResponse><ActionResult>...`
//! with the request id, and `<ErrorResponse>` for errors.

use tessera_proto::xml::{escape_into, XML_DECL};

use crate::iam::IamError;
use crate::response::Response;

pub const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn namespace(service: &str) -> &'static str {
    if service == "iam" {
        IAM_NS
    } else {
        STS_NS
    }
}

/// The inside of an `<ActionResult>` element.
#[derive(Debug, Default)]
pub struct Out {
    buf: String,
}

impl Out {
    pub fn open(&mut self, name: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
        self
    }

    pub fn elem(&mut self, name: &str, text: &str) -> &mut Self {
        self.open(name);
        escape_into(&mut self.buf, text);
        self.close(name)
    }

    pub fn elem_opt(&mut self, name: &str, text: Option<&str>) -> &mut Self {
        if let Some(t) = text {
            self.elem(name, t);
        }
        self
    }

    /// Appends another fragment.
    pub fn raw(&mut self, other: Out) -> &mut Self {
        self.buf.push_str(&other.buf);
        self
    }

    pub fn bool(&mut self, name: &str, v: bool) -> &mut Self {
        self.elem(name, if v { "true" } else { "false" })
    }

    /// A date as IAM renders it (ISO 8601, UTC, seconds).
    pub fn date(&mut self, name: &str, ms: i64) -> &mut Self {
        self.elem(name, &tessera_policy::time::format_iso8601(ms.div_euclid(1000)))
    }

    /// `IsTruncated` and `Marker` of a list page.
    pub fn truncation(&mut self, next: Option<&str>) -> &mut Self {
        self.bool("IsTruncated", next.is_some());
        self.elem_opt("Marker", next)
    }
}

pub fn success(service: &str, action: &str, out: Out, request_id: &str) -> Response {
    let mut body = String::with_capacity(out.buf.len() + 256);
    body.push_str(XML_DECL);
    body.push_str(&format!("<{action}Response xmlns=\"{}\">", namespace(service)));
    body.push_str(&format!("<{action}Result>"));
    body.push_str(&out.buf);
    body.push_str(&format!("</{action}Result><ResponseMetadata><RequestId>"));
    escape_into(&mut body, request_id);
    body.push_str(&format!("</RequestId></ResponseMetadata></{action}Response>"));
    Response::new(200)
        .header("Content-Type", "text/xml")
        .header("x-amzn-RequestId", request_id.to_string())
        .with_body(body.into_bytes())
}

pub fn error(service: &str, e: &IamError, request_id: &str) -> Response {
    let mut body = String::with_capacity(256);
    body.push_str(XML_DECL);
    body.push_str(&format!("<ErrorResponse xmlns=\"{}\"><Error><Type>", namespace(service)));
    body.push_str(if e.status >= 500 { "Receiver" } else { "Sender" });
    body.push_str("</Type><Code>");
    escape_into(&mut body, e.code);
    body.push_str("</Code><Message>");
    escape_into(&mut body, &e.message);
    body.push_str("</Message></Error><RequestId>");
    escape_into(&mut body, request_id);
    body.push_str("</RequestId></ErrorResponse>");
    Response::new(e.status)
        .header("Content-Type", "text/xml")
        .header("x-amzn-RequestId", request_id.to_string())
        .with_body(body.into_bytes())
}
