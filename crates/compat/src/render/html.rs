//! The HTML report: one self-contained page (inline CSS and JavaScript, no
//! external resources) with the platform, the summary, the causes grouped
//! with counts, and a filterable, sortable table of files.

use std::fmt::Write;

use crate::check::{Report, Verdict};

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1d2330}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}
.muted{color:#667}code{font:12px ui-monospace,monospace}
dl.platform{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem}
dl.platform dt{color:#667}dl.platform dd{margin:0}
.cards{display:flex;gap:1rem;margin:1rem 0}.card{border:1px solid #dde;border-radius:6px;padding:.6rem 1rem;min-width:7rem;cursor:pointer}
.card b{display:block;font-size:1.6rem}.fail b{color:#c0392b}.warn b{color:#b7791f}.ok b{color:#2f855a}
ul.causes{padding-left:1.2rem}ul.causes li{margin:.2rem 0}ul.causes .n{font-weight:600}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eef;vertical-align:top}
th{cursor:pointer;user-select:none;background:#f6f7fb;position:sticky;top:0}
td.v-fail{color:#c0392b;font-weight:600}td.v-warn{color:#b7791f;font-weight:600}td.v-ok{color:#2f855a}
.controls{display:flex;gap:1rem;align-items:center;margin:.5rem 0}input[type=search]{flex:1;padding:.35rem .5rem}
.kind{font:12px ui-monospace,monospace;background:#f1f2f6;border-radius:3px;padding:0 .3rem}
"#;

const SCRIPT: &str = r#"
(function(){
var q=document.getElementById('q'),sel=document.getElementById('verdict'),rows=[].slice.call(document.querySelectorAll('#files tbody tr'));
function apply(){var t=q.value.toLowerCase(),v=sel.value,n=0;rows.forEach(function(r){var ok=(!v||r.dataset.verdict===v)&&(!t||r.textContent.toLowerCase().indexOf(t)>=0);r.style.display=ok?'':'none';if(ok)n++});document.getElementById('shown').textContent=n;}
q.addEventListener('input',apply);sel.addEventListener('change',apply);
[].forEach.call(document.querySelectorAll('.card'),function(c){c.addEventListener('click',function(){sel.value=c.dataset.verdict;apply();});});
[].forEach.call(document.querySelectorAll('.cause'),function(c){c.addEventListener('click',function(){q.value=c.dataset.subject;sel.value='';apply();});});
var dir={};[].forEach.call(document.querySelectorAll('#files th'),function(th,i){th.addEventListener('click',function(){dir[i]=!dir[i];var tb=document.querySelector('#files tbody');rows.sort(function(a,b){var x=a.children[i].textContent,y=b.children[i].textContent;return dir[i]?x.localeCompare(y):y.localeCompare(x)});rows.forEach(function(r){tb.appendChild(r)});});});
apply();})();
"#;

/// The report as one self-contained HTML page.
pub fn report_html(r: &Report) -> String {
    let p = &r.platform;
    let mut s = String::new();
    let title = format!(
        "plinth check: {} files, {} fail",
        r.summary.files, r.summary.fail
    );
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = write!(s, "<h1>{}</h1>", esc(&title));
    let _ = write!(
        s,
        "<p class=\"muted\">Platform <code>{}</code></p>",
        esc(&p.id)
    );
    let _ = write!(s, "<h2>Platform</h2><dl class=\"platform\">");
    let libc = format!(
        "{} {}",
        serde_json::to_value(p.libc.family)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        p.libc.version.clone().unwrap_or_default()
    );
    let facts = [
        ("Root", p.root.display().to_string()),
        ("Distribution", p.os.pretty_name.clone().unwrap_or_default()),
        ("C library", libc),
        ("Architecture", p.arch.clone()),
        (
            "CPU",
            format!("{} ({}), {}", p.cpu.model, p.cpu.vendor, p.cpu.level),
        ),
        ("Kernel", p.kernel.release.clone()),
        (
            "Features",
            format!(
                "namespaces: {}; overlayfs: {}; seccomp: {}; cgroup: {}",
                p.kernel.namespaces.join(" "),
                p.kernel.overlayfs,
                p.kernel.seccomp,
                p.kernel.cgroup
            ),
        ),
        ("Library search", p.search_path.system_dirs.join(" ")),
    ];
    for (k, v) in facts {
        let _ = write!(s, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&v));
    }
    s.push_str("</dl>");
    let sm = &r.summary;
    let _ = write!(
        s,
        "<h2>Summary</h2><div class=\"cards\"><div class=\"card\" data-verdict=\"\"><b>{}</b>files</div><div class=\"card ok\" data-verdict=\"ok\"><b>{}</b>ok</div><div class=\"card warn\" data-verdict=\"warn\"><b>{}</b>warn</div><div class=\"card fail\" data-verdict=\"fail\"><b>{}</b>fail</div></div>",
        sm.files, sm.ok, sm.warn, sm.fail
    );
    let causes = r.causes();
    if !causes.is_empty() {
        s.push_str("<h2>Causes</h2><ul class=\"causes\">");
        for c in &causes {
            let _ = write!(
                s,
                "<li class=\"cause\" data-subject=\"{}\"><span class=\"kind\">{}</span> {}</li>",
                esc(&c.subject),
                c.kind,
                esc(&c.summary)
            );
        }
        s.push_str("</ul>");
    }
    let _ = write!(
        s,
        "<h2>Files</h2><div class=\"controls\"><input type=\"search\" id=\"q\" placeholder=\"Filter by path, library, version...\"><select id=\"verdict\"><option value=\"\">all verdicts</option><option value=\"fail\">fail</option><option value=\"warn\">warn</option><option value=\"ok\">ok</option></select><span><span id=\"shown\">{}</span> shown</span></div>",
        r.files.len()
    );
    s.push_str("<table id=\"files\"><thead><tr><th>File</th><th>Verdict</th><th>Problems</th></tr></thead><tbody>");
    for f in &r.files {
        let v = match f.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        };
        let problems: Vec<String> = f
            .problems
            .iter()
            .map(|p| format!("<span class=\"kind\">{}</span> {}", p.kind, esc(&p.detail)))
            .collect();
        let _ = write!(
            s,
            "<tr data-verdict=\"{v}\"><td><code>{}</code></td><td class=\"v-{v}\">{v}</td><td>{}</td></tr>",
            esc(&f.path),
            problems.join("<br>")
        );
    }
    let _ = writeln!(s, "</tbody></table><script>{SCRIPT}</script></body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
