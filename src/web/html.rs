//! HTML building blocks: escaping, the page frame with its stylesheet and
//! the small script for live updates, and value formatting.
//!
//! The script is an enhancement: it re-fetches the page and swaps every
//! element marked `data-live` (the server stays the only renderer), and on
//! a job page follows the running step's log over server-sent events.

use warp::http::StatusCode;
use warp::Reply;

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;padding:.6rem 1.2rem}
header a{color:#fff;margin-right:1.2rem;text-decoration:none;font-weight:600}
main{padding:1rem 1.2rem;max-width:80rem}
table{border-collapse:collapse;background:#fff;margin:.4rem 0 1.2rem;min-width:40rem}
th,td{border:1px solid #d5d9e0;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#eceff3}
code,pre{font-family:ui-monospace,monospace;font-size:.85rem}
pre{background:#fff;border:1px solid #d5d9e0;padding:.6rem;overflow:auto}
#live-log{max-height:32rem;background:#10141b;color:#d8dee9}
.success,.passed{color:#1a7f37;font-weight:600}
.failure,.failed{color:#cf222e;font-weight:600}
.error,.interrupted{color:#9a6700;font-weight:600}
.running,.queued,.cancelled{color:#0550ae;font-weight:600}
form.action{display:inline-block;margin:.4rem 1rem .4rem 0}
p.empty{color:#57606a}
"#;

const SCRIPT: &str = r#"
(() => {
  async function refresh() {
    try {
      const response = await fetch(location.href, {cache: "no-store"});
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const element of document.querySelectorAll("[data-live]")) {
        const replacement = fresh.getElementById(element.id);
        if (replacement) element.replaceWith(document.importNode(replacement, true));
      }
    } catch (error) {
      // The service may be restarting; the next tick tries again.
    }
  }
  const every = Number(document.body.dataset.refreshMs || 0);
  if (every > 0) setInterval(refresh, every);
  const log = document.getElementById("live-log");
  if (log && log.dataset.stream && window.EventSource) {
    const title = document.getElementById("live-step");
    const source = new EventSource(log.dataset.stream);
    // The stream re-sends the running step's tail, which replaces the copy
    // rendered into the page; later steps are appended under a marker.
    let isFirstStep = true;
    source.addEventListener("step", (event) => {
      const step = JSON.parse(event.data).step;
      title.textContent = step;
      if (isFirstStep) log.textContent = "";
      isFirstStep = false;
      log.textContent += "── " + step + " ──\n";
      refresh();
    });
    source.addEventListener("log", (event) => {
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent += event.data + "\n";
      if (atEnd) log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("done", (event) => {
      source.close();
      title.textContent = "finished: " + JSON.parse(event.data).result;
      refresh();
    });
  }
})();
"#;

/// A whole page. `refresh_ms` > 0 makes the script re-fetch it that often.
pub fn page(title: &str, refresh_ms: u32, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · ember-ci</title><style>{STYLE}</style></head>\n\
         <body data-refresh-ms=\"{refresh_ms}\"><header><nav>\
         <a href=\"/\">Dashboard</a><a href=\"/backends\">Backends</a>\
         <a href=\"/api/health\">Health (JSON)</a><a href=\"/metrics\">Metrics</a>\
         </nav></header>\n<main>\n{body}\n</main><script>{SCRIPT}</script></body></html>\n",
        title = html_escape(title),
    )
}

/// A short page telling why something was not done.
pub fn message_page(status: StatusCode, title: &str, message: &str) -> warp::reply::Response {
    let body = format!(
        "<h1>{}</h1><p id=\"message\">{}</p><p><a href=\"javascript:history.back()\">Back</a> · <a href=\"/\">Dashboard</a></p>",
        html_escape(title),
        html_escape(message)
    );
    warp::reply::with_status(warp::reply::html(page(title, 0, &body)), status).into_response()
}

/// `4.2 s`, `3 m 05 s`, `1 h 02 m`.
pub fn duration(secs: f64) -> String {
    let whole = secs.max(0.0) as u64;
    match whole {
        0..60 => format!("{secs:.1} s"),
        60..3600 => format!("{} m {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} m", whole / 3600, whole % 3600 / 60),
    }
}

/// `<span class="x">x</span>` for a state or result word.
pub fn badge(word: &str) -> String {
    let word = html_escape(word);
    format!("<span class=\"{word}\">{word}</span>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_both_quotes() {
        assert_eq!(
            html_escape("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(4.25), "4.2 s");
        assert_eq!(duration(185.0), "3 m 05 s");
        assert_eq!(duration(3720.0), "1 h 02 m");
    }
}
