"""Node.js as the oracle for JSON.parse/JSON.stringify, createHmac and encodeURIComponent.

One ``node`` process answers a whole batch (requests as JSON on stdin, answers as JSON on
stdout), so hundreds of cases cost one start-up (~50 ms).  Bytes cross the pipe as base64
so nothing is re-encoded on the way.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

NODE = shutil.which("node")

_SCRIPT = r"""
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const hmac = (secret, message) => crypto.createHmac('sha256', secret).update(message).digest('hex');
const b64 = (text) => Buffer.from(text, 'utf8').toString('base64');
// encodeURIComponent keeps !'()* which RFC 3986 reserves; MDN's fixedEncodeURIComponent.
const rfc3986 = (text) => encodeURIComponent(text).replace(
  /[!'()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const paths = {course: 'c', module: 'm', lesson: 'l', survey: 's', guide: 'gd'};
function link(r) {
  const e = rfc3986(r.externalUserId);
  const g = r.teamIds.join(',');
  let url;
  if (r.kind === 'hub') url = `${r.base}/d/?g=${g}&e=${e}`;
  else if (r.kind === 'knowledge-hub') url = `${r.base}/kh/${r.contentId}?e=${e}`;
  else url = `${r.base}/${paths[r.kind]}/${r.contentId}?g=${g}&e=${e}`;
  return {url, signed: `${url}&sig=${hmac(r.secret, url)}`};
}
function answer(r) {
  switch (r.op) {
    case 'canon': {
      const buf = Buffer.from(r.raw, 'base64');
      let js;
      try {
        js = JSON.stringify(JSON.parse(buf.toString('utf8')));
      } catch (err) {
        return {ok: false, error: String(err && err.message)};
      }
      return {
        ok: true,
        js: b64(js),
        hmacJs: r.secrets.map((s) => hmac(s, js)),
        hmacRaw: r.secrets.map((s) => hmac(s, buf)),
      };
    }
    case 'number':
      return {value: String(Number(r.text))};
    case 'hmac':
      return {hex: hmac(r.secret, r.message)};
    case 'encodeURIComponent':
      return {plain: encodeURIComponent(r.value), rfc3986: rfc3986(r.value)};
    case 'link':
      return link(r);
    default:
      throw new Error('unknown op ' + r.op);
  }
}
const requests = JSON.parse(fs.readFileSync(0, 'utf8'));
process.stdout.write(JSON.stringify(requests.map(answer)));
"""


def require_node() -> str:
    """The node executable, or skip the calling test when this machine has none."""
    if NODE is None:
        pytest.skip("node is not installed: the JavaScript oracle cannot run")
    return NODE


def run(requests: Sequence[dict[str, Any]], *, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Answer every request with one node process; answers come back in request order."""
    node = require_node()
    payload = json.dumps(list(requests), ensure_ascii=True).encode("ascii")
    proc = subprocess.run(
        [node, "-e", _SCRIPT],
        input=payload,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"node failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    answers: list[dict[str, Any]] = json.loads(proc.stdout.decode("utf-8"))
    assert len(answers) == len(requests)
    return answers


@dataclass(frozen=True)
class Canon:
    """What Node makes of one raw body: its JSON.stringify form and HMACs, or a parse error."""

    ok: bool
    js: bytes | None
    hmac_js: tuple[str, ...]
    hmac_raw: tuple[str, ...]
    error: str | None


def canon(raws: Sequence[bytes], secrets: Sequence[str] = ("s3cret",)) -> list[Canon]:
    """``JSON.stringify(JSON.parse(buf.toString('utf8')))`` and HMACs for each raw body."""
    requests = [
        {"op": "canon", "raw": base64.b64encode(raw).decode("ascii"), "secrets": list(secrets)}
        for raw in raws
    ]
    out: list[Canon] = []
    for a in run(requests):
        if a["ok"]:
            out.append(
                Canon(True, base64.b64decode(a["js"]), tuple(a["hmacJs"]),
                      tuple(a["hmacRaw"]), None)
            )
        else:
            out.append(Canon(False, None, (), (), a["error"]))
    return out


def number_to_string(texts: Sequence[str]) -> list[str]:
    """``String(Number(text))`` for each decimal text: JavaScript's number printing."""
    return [a["value"] for a in run([{"op": "number", "text": t} for t in texts])]


def hmac_hex(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """``createHmac('sha256', secret).update(message).digest('hex')`` for (secret, message)."""
    reqs = [{"op": "hmac", "secret": s, "message": m} for s, m in pairs]
    return [a["hex"] for a in run(reqs)]


def encode_uri_component(values: Sequence[str]) -> list[tuple[str, str]]:
    """(encodeURIComponent(v), the RFC 3986 variant that also encodes !'()*) per value."""
    answers = run([{"op": "encodeURIComponent", "value": v} for v in values])
    return [(a["plain"], a["rfc3986"]) for a in answers]


def links(cases: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    """Seamless links built and signed in JavaScript: ``{"url", "signed"}`` per case."""
    return run([{"op": "link", **case} for case in cases])
