"""`/viewer/`: the OHIF Viewer (its prebuilt `dist/`, installed by `make setup` into
`.tools/ohif/dist`) on the gateway's own `/dicomweb`.

- `app-config.js` is written here: one DICOMweb data source, `/dicomweb` of this origin;
  the dashboard's session (sessionStorage, same origin) supplies the bearer token, added
  to the viewer's requests to `/dicomweb` only; without a session the page goes to the
  dashboard's login and comes back.
- Every other existing file is sent as it is (content-hashed names cached for a year);
  any other path is the viewer's `index.html` (its own router).
- Cross-origin isolation (COOP/COEP) for the viewer's pages only, and a CSP that lets
  the viewer run its WebAssembly and workers but load nothing from outside the gateway.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route, Router

from gateway.core.enums import AuthMode
from gateway.server.ui import IMMUTABLE

DIST = Path(__file__).resolve().parents[2] / ".tools" / "ohif" / "dist"
SESSION_KEY = "pacs-gateway.session"  # where the dashboard keeps its session (ui/src/session.ts)
_HASHED = re.compile(r"\.[0-9a-f]{16,}\.(?:js|wasm|css|woff2)$|^[0-9a-f]{16,}\.(?:wasm|woff2)$")
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval' "
    "'wasm-unsafe-eval' blob:; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self' data: blob:; "
    "media-src 'self' blob:; frame-ancestors 'self'; base-uri 'self'; form-action 'self'"
)
ISOLATED = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
    "cross-origin-resource-policy": "same-origin",
    "content-security-policy": CSP,
}
MISSING = "The viewer is not installed (.tools/ohif/dist is missing): run `make setup`.\n"

_SHIM = """(function () {
  "use strict";
  var session = null;
  try { session = JSON.parse(window.sessionStorage.getItem(%(key)s) || "null"); } catch (e) {}
  var token = session && session.token;
  if (!token && %(required)s) {
    var next = window.location.pathname + window.location.search;
    window.location.replace("/login?next=" + encodeURIComponent(next));
    return;
  }
  if (!token) return;
  var root = window.location.origin + "/dicomweb";
  function ours(url) {
    try { return String(new URL(String(url), window.location.href)).indexOf(root) === 0; }
    catch (e) { return false; }
  }
  var open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__toGateway = ours(url);
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    if (this.__toGateway) this.setRequestHeader("Authorization", "Bearer " + token);
    return send.apply(this, arguments);
  };
  var fetch0 = window.fetch.bind(window);
  window.fetch = function (input, init) {
    var url = typeof input === "string" || input instanceof URL ? input : input.url;
    if (!ours(url)) return fetch0(input, init);
    var given = (init && init.headers) || (input instanceof Request ? input.headers : {});
    var headers = new Headers(given);
    headers.set("Authorization", "Bearer " + token);
    return fetch0(input, Object.assign({}, init || {}, { headers: headers }));
  };
})();
window.config = %(config)s;
window.config.dataSources[0].configuration.qidoRoot = window.location.origin + "/dicomweb";
window.config.dataSources[0].configuration.wadoRoot = window.location.origin + "/dicomweb";
window.config.dataSources[0].configuration.wadoUriRoot = window.location.origin + "/dicomweb";
"""


def ohif_config() -> dict[str, Any]:
    """OHIF's `window.config`: one DICOMweb data source, this gateway's `/dicomweb` (the
    roots are set to the page's origin by `app-config.js`)."""
    return {
        "routerBasename": "/viewer",
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": "dicomweb",
        "investigationalUseDialog": {"option": "never"},
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "dicomweb",
                "configuration": {
                    "friendlyName": "pacs-gateway: every archive",
                    "name": "pacs-gateway",
                    "qidoRoot": "/dicomweb",
                    "wadoRoot": "/dicomweb",
                    "wadoUriRoot": "/dicomweb",
                    "qidoSupportsIncludeField": False,
                    "imageRendering": "wadors",
                    "thumbnailRendering": "wadors",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": False,
                    "supportsWildcard": True,
                    "staticWado": False,
                    "omitQuotationForMultipartRequest": True,
                    "bulkDataURI": {"enabled": True},
                },
            }
        ],
    }


def app_config_js(auth_required: bool) -> str:
    """The viewer's `app-config.js`."""
    return _SHIM % {
        "key": json.dumps(SESSION_KEY),
        "required": "true" if auth_required else "false",
        "config": json.dumps(ohif_config(), indent=1),
    }


def _headers(name: str) -> dict[str, str]:
    cache = IMMUTABLE if _HASHED.search(name) else "no-cache"
    return {**ISOLATED, "cache-control": cache}


def router(runtime_of: Any, dist: Path = DIST) -> Router:
    """The `/viewer` routes."""
    root = dist.resolve()

    async def app_config(request: Request) -> Response:
        required = runtime_of(request).settings.auth.mode != AuthMode.OPEN
        return Response(
            app_config_js(required),
            media_type="application/javascript",
            headers={**ISOLATED, "cache-control": "no-cache"},
        )

    async def no_service_worker(request: Request) -> Response:
        # OHIF's script would register a service worker that imports code from a CDN
        return Response("", media_type="application/javascript", headers=_headers(""))

    async def files(request: Request) -> Response:
        index = root / "index.html"
        if not index.is_file():
            return PlainTextResponse(MISSING, status_code=503)
        wanted = (root / request.path_params.get("path", "")).resolve()
        if wanted.is_file() and root in wanted.parents:
            return FileResponse(wanted, headers=_headers(wanted.name))
        return FileResponse(index, media_type="text/html", headers=_headers("index.html"))

    return Router(
        [
            Route("/", files, methods=["GET", "HEAD"]),
            Route("/app-config.js", app_config, methods=["GET", "HEAD"]),
            Route("/init-service-worker.js", no_service_worker, methods=["GET", "HEAD"]),
            Route("/{path:path}", files, methods=["GET", "HEAD"]),
        ]
    )
