#!/usr/bin/env bash
# The HTML report checked in a real browser: renders results/<profile>/index.html in headless
# Chromium, saves a screenshot 1,280 px wide, and fails when
#   - a table is missing (a tableN.md without its grid in the rendered page or its tableN.tex),
#   - an image is missing (an <img> whose file is absent, not a PNG, or not served when loaded),
#     or the page has no inline SVG chart,
#   - the page requests anything outside its folder (every src/href must be a relative path
#     inside it; Chromium's network log must name nothing but the local server that serves the
#     folder, and every request it made must have found its file), or loads a script,
#   - a tableN.tex does not compile with pdflatex (in a bare article with booktabs and graphicx).
#
#   scripts/check-report.sh                       # results/smoke, screenshot in target/check-report
#   scripts/check-report.sh results/full OUTDIR
#
# Needs chromium, pdflatex (texlive-latex-base, texlive-latex-recommended for booktabs), a font
# for Chromium (fonts-dejavu-core) and python3: installed from the Debian packages when missing
# (as root or with password-less sudo; otherwise the script says what to install). Run
# `cargo xtask reproduce all --profile smoke` first. Exit 0 when every check passes, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=${1:-results/smoke}
out=${2:-target/check-report}
say() { echo "check-report: $*" >&2; }

# 1. What it needs, from Debian.
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v pdflatex >/dev/null || need+=(texlive-latex-base)
command -v kpsewhich >/dev/null && kpsewhich booktabs.sty >/dev/null ||
    need+=(texlive-latex-recommended)
compgen -G "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf" >/dev/null || need+=(fonts-dejavu-core)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]} > 0)); then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        say "missing ${need[*]}: install them as root (apt-get install --no-install-recommends ${need[*]}) and rerun"
        exit 1
    fi
    say "installing ${need[*]}"
    "${sudo[@]}" apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${need[@]}" >&2
fi

[[ -f "$dir/index.html" ]] || {
    say "$dir/index.html does not exist; run \`cargo xtask reproduce all --profile smoke\` first"
    exit 1
}
mkdir -p "$out"
out=$(cd "$out" && pwd)
dir=$(cd "$dir" && pwd)
work=$(mktemp -d)
server=""
cleanup() {
    [[ -n "$server" ]] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# 2. Serve the folder, and only it, logging every request.
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$dir" >"$work/server.out" 2>"$work/server.log" &
server=$!
port=""
for _ in $(seq 50); do
    port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/server.out" | head -1)
    [[ -n "$port" ]] && break
    sleep 0.1
done
[[ -n "$port" ]] || {
    say "the local server did not start: $(cat "$work/server.log")"
    exit 1
}
url="http://127.0.0.1:$port/index.html"

# 3. Chromium: a screenshot 1,280 px wide, then the rendered DOM, each with a network log. Every
# host name but the local server's address resolves to nothing, so a request outside the folder
# fails - and is still logged.
chrome() {
    local name=$1
    shift
    timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-dev-shm-usage --hide-scrollbars --user-data-dir="$work/profile-$name" \
        --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
        --log-net-log="$work/netlog-$name.json" --net-log-capture-mode=Default \
        --virtual-time-budget=10000 "$@" "$url"
}
shot="$out/index-1280.png"
rm -f "$shot"
chrome shot --window-size=1280,1400 --screenshot="$shot" >"$work/chrome-shot.log" 2>&1 || {
    say "chromium failed to take the screenshot:"
    tail -20 "$work/chrome-shot.log" >&2
    exit 1
}
chrome dom --dump-dom >"$work/dom.html" 2>"$work/chrome-dom.log" || {
    say "chromium failed to render the page:"
    tail -20 "$work/chrome-dom.log" >&2
    exit 1
}
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
server=""

# 4. Tables, images, requests.
python3 - "$dir" "$work" "$port" "$shot" <<'PY'
import html.parser, json, os, re, struct, sys, urllib.parse

folder, work, port, shot = sys.argv[1:5]
origin = f"http://127.0.0.1:{port}/"
errors = []


class Refs(html.parser.HTMLParser):
    """Every URL an element names, and the ids and images of the page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.urls, self.imgs, self.ids, self.svgs, self.scripts = [], [], set(), 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "svg":
            self.svgs += 1
        if tag == "script":
            self.scripts += 1
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        for k in ("src", "href", "srcset", "poster", "data", "action", "formaction"):
            if a.get(k):
                self.urls.append((tag, k, a[k]))
        style = a.get("style") or ""
        self.urls += [(tag, "style", u) for u in re.findall(r"url\(([^)]*)\)", style)]


def parse(path):
    p = Refs()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    return p


def local_file(ref):
    """The file a relative reference names inside the folder (the folder itself for a fragment or
    an inline data: URL), or None when it leaves it."""
    if ref.startswith("data:"):
        return folder
    u = urllib.parse.urlsplit(ref)
    if u.scheme or u.netloc or ref.startswith("/"):
        return None
    path = urllib.parse.unquote(u.path)
    if not path:
        return folder  # a fragment: this page
    full = os.path.realpath(os.path.join(folder, path))
    if os.path.commonpath([full, os.path.realpath(folder)]) != os.path.realpath(folder):
        return None
    return full


page = parse(os.path.join(folder, "index.html"))
dom = parse(os.path.join(work, "dom.html"))
with open(os.path.join(folder, "index.html"), encoding="utf-8") as f:
    source = f.read()
for bad in ("http://", "https://", "//cdn", "@import"):
    if bad in source:
        errors.append(f"index.html names {bad!r}")
if page.scripts or dom.scripts:
    errors.append("the page holds a <script>")

# Every table the folder has is on the rendered page, with its LaTeX beside it.
tables = sorted(n[:-3] for n in os.listdir(folder) if re.fullmatch(r"table\d\.md", n))
if not tables:
    errors.append(f"no tableN.md in {folder}")
for t in tables:
    if f"grid-{t}" not in dom.ids:
        errors.append(f"{t}: no grid-{t} table on the rendered page")
    if not os.path.isfile(os.path.join(folder, t + ".tex")):
        errors.append(f"{t}: no {t}.tex")

# Every reference stays in the folder; every image exists and is a picture.
for tag, attr, ref in page.urls:
    f = local_file(ref)
    if f is None:
        errors.append(f"<{tag} {attr}={ref!r}> points outside the folder")
    elif not os.path.exists(f):
        errors.append(f"<{tag} {attr}={ref!r}>: no such file")
for src in page.imgs:
    f = local_file(src)
    if f and os.path.isfile(f):
        with open(f, "rb") as fh:
            head = fh.read(8)
        if head != b"\x89PNG\r\n\x1a\n" and not f.endswith(".svg"):
            errors.append(f"<img src={src!r}> is not a PNG")
if dom.svgs == 0:
    errors.append("no inline SVG chart on the rendered page")
if len(dom.imgs) != len(page.imgs):
    errors.append(f"{len(page.imgs)} images in index.html, {len(dom.imgs)} rendered")

# What the page made Chromium ask for: only the local server. A request belongs to the page when
# its network isolation key names the page's site; the browser's own traffic (update checks,
# account lookups: key "null null" or Google's) is not the page's and is only counted.
requested, internal = set(), 0
for name in ("shot", "dom"):
    try:
        with open(os.path.join(work, f"netlog-{name}.json"), encoding="utf-8") as f:
            log = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        errors.append(f"Chromium's network log ({name}) is unreadable: {e}")
        continue
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    for e in log.get("events", []):
        p = e.get("params") or {}
        if e.get("type") != start_job or "url" not in p:
            continue
        u = p["url"]
        if u.startswith(("data:", "about:", "chrome:", "blob:")):
            continue
        if not p.get("network_isolation_key", "").startswith("http://127.0.0.1 "):
            internal += 1
            continue
        if not u.startswith(origin):
            errors.append(f"the page made Chromium request {u}, outside the folder")
        else:
            requested.add(urllib.parse.unquote(urllib.parse.urlsplit(u).path))
if not requested:
    errors.append("Chromium's network log shows no request of the page at all")
served = {}
with open(os.path.join(work, "server.log"), encoding="utf-8", errors="replace") as f:
    for line in f:
        m = re.search(r'"GET (\S+) HTTP/[\d.]+" (\d{3})', line)
        if m:
            path = urllib.parse.unquote(urllib.parse.urlsplit(m.group(1)).path)
            served[path] = m.group(2)
            if m.group(2) not in ("200", "304"):
                errors.append(f"the page asked for {path}: HTTP {m.group(2)}")
for src in page.imgs:
    path = "/" + urllib.parse.unquote(urllib.parse.urlsplit(src).path)
    if path not in served:
        errors.append(f"<img src={src!r}> was never loaded")

# The screenshot: a PNG 1,280 px wide.
with open(shot, "rb") as f:
    head = f.read(24)
width = struct.unpack(">I", head[16:20])[0] if head[:8] == b"\x89PNG\r\n\x1a\n" else 0
if width != 1280:
    errors.append(f"screenshot {shot} is {width} px wide, not 1280")

for e in errors:
    print(f"check-report: FAIL {e}", file=sys.stderr)
if errors:
    sys.exit(1)
print(
    f"check-report: {len(tables)} tables, {len(page.imgs)} images, {dom.svgs} inline SVG charts; "
    f"{len(served)} files requested, all from the folder ({internal} requests of the browser's own "
    f"ignored)",
    file=sys.stderr,
)
PY

# 5. Each tableN.tex compiles in a bare article.
for tex in "$dir"/table*.tex; do
    [[ -e "$tex" ]] || continue
    name=$(basename "$tex" .tex)
    mkdir -p "$work/tex"
    cp "$tex" "$work/tex/$name.tex"
    cat >"$work/tex/$name-doc.tex" <<EOF
\\documentclass{article}
\\usepackage{booktabs}
\\usepackage{graphicx}
\\begin{document}
\\input{$name}
\\end{document}
EOF
    if ! (cd "$work/tex" && pdflatex -interaction=nonstopmode -halt-on-error "$name-doc.tex" >"$name.out" 2>&1); then
        say "FAIL $name.tex does not compile with pdflatex:"
        grep -A3 '^!' "$work/tex/$name-doc.log" | head -20 >&2 || tail -20 "$work/tex/$name.out" >&2
        exit 1
    fi
    if grep -q "Missing character" "$work/tex/$name-doc.log"; then
        say "FAIL $name.tex: characters the font lacks:"
        grep "Missing character" "$work/tex/$name-doc.log" | sort -u | head >&2
        exit 1
    fi
    cp "$work/tex/$name-doc.pdf" "$out/$name.pdf"
done
say "ok: $dir/index.html renders with every table and image and requests nothing outside its folder; the .tex compile (PDFs and the screenshot in $out)"
