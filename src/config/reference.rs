//! The reference of `gatehouse.yaml`: every key with its type, default and meaning, in
//! one table. The JSON Schema (`gatehouse config schema`, `docs/gatehouse.schema.json`)
//! and `docs/configuration.md` are generated from it, and tests hold the table to the
//! configuration types (every key a type accepts is here, and nothing else), so none of
//! the three can drift from what `gatehouse serve` reads.

use serde_json::{Map, Value, json};

/// The type of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Type {
    /// A mapping whose keys are listed in the table.
    Object,
    /// A list of mappings (`[]` in the paths of their keys).
    ObjectList,
    /// A list of mappings with exactly one of their listed keys each.
    OneOfList,
    /// A string.
    Str,
    /// A `host:port` listen address (Cerbos's `:port` means every interface).
    Addr,
    /// A whole number, 0 or more.
    Int,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// A list of strings.
    StrList,
    /// A mapping of strings to strings.
    StrMap,
    /// Any mapping (free-form).
    AnyObject,
}

impl Type {
    fn describe(self) -> String {
        match self {
            Type::Object => "mapping".into(),
            Type::ObjectList => "list of mappings".into(),
            Type::OneOfList => "list of one-key mappings".into(),
            Type::Str => "string".into(),
            Type::Addr => "`host:port`".into(),
            Type::Int => "integer".into(),
            Type::Number => "number".into(),
            Type::Bool => "boolean".into(),
            Type::Enum(values) => values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" \\| "),
            Type::StrList => "list of strings".into(),
            Type::StrMap => "mapping of strings".into(),
            Type::AnyObject => "mapping (any)".into(),
        }
    }
}

/// One key of `gatehouse.yaml`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key {
    /// Dotted path; `[]` marks the items of a list (`extAuthz.routes[].path`).
    pub(crate) path: &'static str,
    /// Its type.
    pub(crate) ty: Type,
    /// The default when left out (`required` when it must be given; `none` when absent
    /// means off or unset, and `null` is accepted).
    default: &'static str,
    /// What it does.
    doc: &'static str,
}

const fn k(path: &'static str, ty: Type, default: &'static str, doc: &'static str) -> Key {
    Key {
        path,
        ty,
        default,
        doc,
    }
}

use Type::*;

/// Every key, section by section.
pub(crate) const KEYS: &[Key] = &[
    // === server ===
    k(
        "server",
        Object,
        "",
        "Listeners and the Cerbos API's request limits. Read at start only: a change needs a restart.",
    ),
    k(
        "server.grpcListenAddr",
        Addr,
        "127.0.0.1:3593",
        "gRPC listener: Envoy ext_authz, the Cerbos gRPC API, gRPC health. `--grpc-addr` overrides it.",
    ),
    k(
        "server.httpListenAddr",
        Addr,
        "127.0.0.1:3592",
        "HTTP listener: the Cerbos HTTP API, `/health`, `/_cerbos/health`. `--http-addr` overrides it.",
    ),
    k(
        "server.adminListenAddr",
        Addr,
        "127.0.0.1:3594",
        "Admin listener: `/_gatehouse/status`, `/metrics`, `/_gatehouse/jwks.json`, `/health`. Plaintext: keep it on loopback or a private interface. `--admin-addr` overrides it.",
    ),
    k(
        "server.cerbosApi",
        Enum(&["enabled", "disabled", "loopback"]),
        "enabled",
        "The Cerbos API (gRPC and HTTP): `enabled`; `disabled` (ext_authz only; health stays); `loopback`: answered only to clients connecting from 127.0.0.0/8 or ::1 (others get HTTP 403, gRPC PERMISSION_DENIED).",
    ),
    k(
        "server.tls",
        Object,
        "none",
        "TLS on the gRPC and HTTP listeners (Cerbos's keys `cert`, `key`, `caCert`). The files are followed: a rotated certificate is used for new connections; files that do not load keep the previous certificate in force (logged).",
    ),
    k(
        "server.tls.cert",
        Str,
        "",
        "Certificate chain, PEM (relative to this file).",
    ),
    k(
        "server.tls.key",
        Str,
        "",
        "Private key, PEM (relative to this file).",
    ),
    k(
        "server.tls.caCert",
        Str,
        "none",
        "CA certificates of client certificates, PEM. Given, a client certificate is verified against them.",
    ),
    k(
        "server.tls.clientAuth",
        Enum(&["optional", "required"]),
        "optional",
        "With `caCert`: `optional` verifies a client certificate when one is sent (as Cerbos); `required` is mutual TLS (no valid client certificate, no connection).",
    ),
    k(
        "server.tls.reloadIntervalMs",
        Int,
        "5000",
        "How often the certificate, key and CA files are checked for changes.",
    ),
    k(
        "server.requestLimits",
        Object,
        "",
        "Bounds on one Cerbos API request (Cerbos's keys, plus Gatehouse's own).",
    ),
    k(
        "server.requestLimits.maxActionsPerResource",
        Int,
        "50",
        "Most actions per resource in one CheckResources request.",
    ),
    k(
        "server.requestLimits.maxResourcesPerRequest",
        Int,
        "50",
        "Most resources in one CheckResources request.",
    ),
    k(
        "server.requestLimits.maxRolesPerPrincipal",
        Int,
        "500",
        "Most principal roles in one request.",
    ),
    k(
        "server.requestLimits.maxAttributeValuesPerRequest",
        Int,
        "20000",
        "Most attribute values, nested values included, in one request.",
    ),
    k(
        "server.requestLimits.maxAuxDataTokens",
        Int,
        "16",
        "Most `auxData` tokens in one request.",
    ),
    k(
        "server.connections",
        Object,
        "",
        "Bounds of both listeners' connections (slow and idle clients).",
    ),
    k(
        "server.connections.maxConnections",
        Int,
        "4096",
        "Most open connections per listener; never more than a quarter of the open-file limit each, so files and outbound sockets always find descriptors.",
    ),
    k(
        "server.connections.idleTimeoutMs",
        Int,
        "60000",
        "A connection with no byte read or written for this long is closed.",
    ),
    k(
        "server.connections.headerReadTimeoutMs",
        Int,
        "10000",
        "Longest TLS handshake, and longest wait for a whole HTTP/1 request head (slow clients are closed with 408).",
    ),
    k(
        "server.connections.maxConcurrentStreams",
        Int,
        "1024",
        "Most concurrent HTTP/2 streams per gRPC connection.",
    ),
    k(
        "server.connections.keepAliveIntervalMs",
        Int,
        "60000",
        "HTTP/2 keep-alive ping interval on gRPC connections.",
    ),
    k(
        "server.connections.keepAliveTimeoutMs",
        Int,
        "20000",
        "A keep-alive ping unanswered for this long closes the connection.",
    ),
    k(
        "server.connections.maxConnectionAgeMs",
        Int,
        "600000",
        "gRPC connections are closed gracefully (GOAWAY) after this long.",
    ),
    // === policies ===
    k(
        "policies",
        Object,
        "none",
        "Where policies come from: a `directory` or a `git` repository (or Cerbos's `storage`). Read at start only.",
    ),
    k(
        "policies.directory",
        Str,
        "none",
        "The policy directory (Cerbos disk-store layout), relative to this file. `--policies` overrides it.",
    ),
    k(
        "policies.git",
        Object,
        "none",
        "A git repository instead of a directory; its branch is followed.",
    ),
    k(
        "policies.git.url",
        Str,
        "required",
        "Repository URL. Credentials come from git's own configuration, never from this file.",
    ),
    k("policies.git.branch", Str, "main", "Branch to follow."),
    k(
        "policies.git.subDir",
        Str,
        "\"\"",
        "Directory of the policies inside the repository.",
    ),
    k(
        "policies.git.checkoutDir",
        Str,
        "none",
        "Where the repository is checked out (default: under the system temp directory).",
    ),
    k(
        "policies.git.pollIntervalMs",
        Int,
        "60000",
        "How often the branch is fetched, milliseconds; 0 turns polling off (SIGHUP still fetches).",
    ),
    k(
        "policies.git.operationTimeoutMs",
        Int,
        "60000",
        "Bound on each git operation, milliseconds.",
    ),
    k(
        "policies.watchForChanges",
        Bool,
        "true",
        "Reload policies when the directory changes; `gatehouse.yaml` is followed the same way.",
    ),
    k(
        "policies.watchIntervalMs",
        Int,
        "500",
        "How often the directory (and `gatehouse.yaml`) is checked for changes, milliseconds.",
    ),
    // === storage (Cerbos) ===
    k(
        "storage",
        Object,
        "none",
        "Cerbos's name for the policy source, so a Cerbos configuration works unchanged.",
    ),
    k(
        "storage.driver",
        Enum(&["disk", "git"]),
        "required",
        "The driver.",
    ),
    k("storage.disk", Object, "none", "The disk driver."),
    k(
        "storage.disk.directory",
        Str,
        "required",
        "Policy directory.",
    ),
    k(
        "storage.disk.watchForChanges",
        Bool,
        "false",
        "Reload on change.",
    ),
    k(
        "storage.git",
        Object,
        "none",
        "The git driver, with Cerbos's keys and defaults.",
    ),
    k(
        "storage.git.protocol",
        Enum(&["file", "https", "ssh"]),
        "none",
        "Checked against the URL's form.",
    ),
    k("storage.git.url", Str, "required", "Repository URL."),
    k("storage.git.branch", Str, "master", "Branch."),
    k(
        "storage.git.subDir",
        Str,
        "none",
        "Policy directory inside the repository.",
    ),
    k(
        "storage.git.checkoutDir",
        Str,
        "none",
        "Checkout directory.",
    ),
    k(
        "storage.git.updatePollInterval",
        Str,
        "60s",
        "Poll interval, a Go duration; `0` turns polling off.",
    ),
    k(
        "storage.git.operationTimeout",
        Str,
        "60s",
        "Bound on each git operation, a Go duration.",
    ),
    k(
        "storage.git.https",
        AnyObject,
        "none",
        "Cerbos's inline https credentials: refused (use a git credential helper).",
    ),
    k(
        "storage.git.ssh",
        AnyObject,
        "none",
        "Cerbos's inline ssh settings: refused (use ssh-agent or `~/.ssh/config`).",
    ),
    // === auxData ===
    k(
        "auxData",
        Object,
        "",
        "JWT key sets for `auxData` in Cerbos API requests (Cerbos's keys). Read at start only.",
    ),
    k("auxData.jwt", Object, "none", "`auxData.jwt` verification."),
    k("auxData.jwt.keySets", ObjectList, "[]", "Key sets by id."),
    k(
        "auxData.jwt.keySets[].id",
        Str,
        "required",
        "The id requests name in `keySetId`.",
    ),
    k(
        "auxData.jwt.keySets[].local",
        Object,
        "none",
        "A local key set: `file` or base64 `data`.",
    ),
    k(
        "auxData.jwt.keySets[].local.file",
        Str,
        "none",
        "Key file, relative to this file.",
    ),
    k(
        "auxData.jwt.keySets[].local.data",
        Str,
        "none",
        "Base64-encoded key data.",
    ),
    k(
        "auxData.jwt.keySets[].local.pem",
        Bool,
        "false",
        "The keys are PEM.",
    ),
    k(
        "auxData.jwt.keySets[].remote",
        Object,
        "none",
        "A remote JWKS.",
    ),
    k(
        "auxData.jwt.keySets[].remote.url",
        Str,
        "required",
        "JWKS URL.",
    ),
    k(
        "auxData.jwt.keySets[].remote.refreshInterval",
        Str,
        "none",
        "Refresh interval, a Go duration.",
    ),
    k(
        "auxData.jwt.keySets[].insecure",
        Object,
        "none",
        "Relaxed key checks.",
    ),
    k(
        "auxData.jwt.keySets[].insecure.optionalAlg",
        Bool,
        "false",
        "Accept keys without `alg`.",
    ),
    k(
        "auxData.jwt.keySets[].insecure.optionalKid",
        Bool,
        "false",
        "Accept keys without `kid`.",
    ),
    k(
        "auxData.jwt.disableVerification",
        Bool,
        "false",
        "Accept tokens without verifying them (development only).",
    ),
    k(
        "auxData.jwt.acceptableTimeSkew",
        Str,
        "none",
        "Allowed clock skew, a Go duration (`2s`).",
    ),
    k(
        "auxData.jwt.cacheSize",
        Int,
        "0",
        "Verified tokens remembered.",
    ),
    // === engine, schema ===
    k(
        "engine",
        Object,
        "",
        "Decision settings (Cerbos's keys). Read at start only.",
    ),
    k(
        "engine.defaultPolicyVersion",
        Str,
        "default",
        "Policy version used when a request gives none. `--default-policy-version` overrides it.",
    ),
    k(
        "engine.lenientScopeSearch",
        Bool,
        "false",
        "Fall back to the nearest existing ancestor scope. `--lenient-scope-search` turns it on.",
    ),
    k(
        "engine.globals",
        AnyObject,
        "{}",
        "Values available to conditions as `G.name`. `--globals` overrides it.",
    ),
    k(
        "engine.strictEvaluation",
        Bool,
        "false",
        "A rule whose condition fails to evaluate denies (instead of being skipped).",
    ),
    k(
        "schema",
        Object,
        "",
        "Attribute schema enforcement. Read at start only.",
    ),
    k(
        "schema.enforcement",
        Enum(&["none", "warn", "reject"]),
        "none",
        "What a request whose attributes fail their schema gets. `--schema-enforcement` overrides it.",
    ),
    // === extAuthz ===
    k(
        "extAuthz",
        Object,
        "",
        "The Envoy ext_authz adapter. Reloaded on change and on SIGHUP.",
    ),
    k(
        "extAuthz.headerPrefix",
        Str,
        "x-gatehouse-",
        "Prefix of the headers added for the backend (and removed from client requests): `<prefix>principal`, `<prefix>roles`, `<prefix>principal-attr` (JSON), `<prefix>derived-roles`, `<prefix>outputs` (JSON), `<prefix>decision-id`.",
    ),
    k(
        "extAuthz.denyBody",
        Enum(&["fastapi", "problem"]),
        "fastapi",
        "Body of denials: `{\"detail\": ...}` as FastAPI's HTTPException, or RFC 9457 `application/problem+json`.",
    ),
    k(
        "extAuthz.denyDetails",
        Bool,
        "false",
        "Put the detailed reason of a denial in its body (development only). Off: the body has the status, a generic reason and the decision id; the details are in the decision log under that id.",
    ),
    k(
        "extAuthz.maxBodyBytes",
        Int,
        "1048576",
        "Largest request body read for `attributes.body`; larger bodies are denied (413).",
    ),
    k(
        "extAuthz.maxFilterBytes",
        Int,
        "8192",
        "Largest filter header (bytes, 64 to 49152) a `plan` route hands the backend; a larger filter is answered 503 with a log line naming the route's kind, action and principal, never shortened.",
    ),
    k(
        "extAuthz.envoyMetadata",
        Enum(&["deny", "all", "none"]),
        "deny",
        "Which gRPC answers carry the decision in Envoy's dynamic metadata (namespace `envoy.filters.http.ext_authz`, for the access log): `deny`: denials (`decision_id`, `effect`, `reason`, `policy`); `all`: allowed requests too (`decision_id`, `effect`, `principal`); `none`. Metadata costs Envoy about 15,000 instructions per answer; an allowed request's decision id is in `<headerPrefix>decision-id`, which the access log reads as `%REQ(X-GATEHOUSE-DECISION-ID)%` (envoy/envoy.yaml).",
    ),
    k(
        "extAuthz.httpService",
        Bool,
        "false",
        "Serve Envoy's HTTP ext_authz (`http_service` with `path_prefix: /_gatehouse/authz`) on the HTTP listener: the same decisions, backend headers, denial bodies and decision ids as the gRPC service (envoy/envoy-http.yaml). Principal sources that need Envoy's metadata (`jwtAuthn`, `mtls` without `trustXfcc`) find nothing in this mode.",
    ),
    k(
        "extAuthz.forwardAuth",
        Object,
        "none",
        "Forward-auth at `/_gatehouse/forward-auth` on the HTTP listener, for nginx `auth_request` (`X-Original-Method`, `X-Original-URI`) and Traefik/Caddy `forward_auth` (`X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`): `200` with the backend headers, or the denial. Proxies send no body: routes with `attributes.body` see none.",
    ),
    k(
        "extAuthz.forwardAuth.trustedProxies",
        StrList,
        "required",
        "Addresses or CIDR blocks (`127.0.0.1`, `10.0.0.0/8`, `::1`) of the proxies whose original-request headers are believed; requests from any other address are denied (403).",
    ),
    k(
        "extAuthz.forwardAuth.denyStatus",
        Int,
        "none",
        "Status of every denial but 401 (nginx passes only 401 and 403 on; set 403 for it). Absent: each denial's own status (403, 400, 404, 413).",
    ),
    k(
        "extAuthz.mode",
        Enum(&["enforce", "shadow"]),
        "enforce",
        "What a denial does on routes without their own `mode`: `enforce` answers it; `shadow` logs it (\"would deny\", with the decision id), counts it in `gatehouse_decisions_total{effect=\"would_deny\"}` and lets the request through with the usual backend headers.",
    ),
    k(
        "extAuthz.candidate",
        Object,
        "none",
        "A candidate policy set, loaded beside the live one with the same engine settings: every engine decision is also made on it, disagreements are counted in `gatehouse_candidate_disagreements_total{kind,action}` and logged with both answers and the decision id; the live answer is the one returned. Read with the configuration (at start, on change, on SIGHUP); one that does not load is a configuration error.",
    ),
    k(
        "extAuthz.candidate.directory",
        Str,
        "none",
        "A policy directory, relative to this file. Give this or `git`.",
    ),
    k(
        "extAuthz.candidate.git",
        Object,
        "none",
        "A git branch or tag of a policy repository (credentials from git's own configuration).",
    ),
    k(
        "extAuthz.candidate.git.url",
        Str,
        "required",
        "Repository URL.",
    ),
    k(
        "extAuthz.candidate.git.branch",
        Str,
        "main",
        "Branch or tag to check out.",
    ),
    k(
        "extAuthz.candidate.git.subDir",
        Str,
        "",
        "Directory of the policies inside the repository.",
    ),
    k(
        "extAuthz.openapi",
        Object,
        "none",
        "Routes imported from the app's OpenAPI document (as `gatehouse routes import` prints them; `x-gatehouse-attributes` gives an operation's attribute sources, `x-gatehouse-plan: {action: read}` makes it a `plan` route), read with the configuration (at start, on change, on SIGHUP). They come after `routes`: a hand-written route of the same method and path template overrides an imported one, and an operation no route covers is denied. A document that cannot be read or fetched, or gives no valid routes, keeps the routes imported last (at start: the hand-written routes alone); the error is logged and shown in `openapi.lastError` of `GET /_gatehouse/status`.",
    ),
    k(
        "extAuthz.openapi.file",
        Str,
        "none",
        "The document saved to a file, relative to this file. Give this or `url`.",
    ),
    k(
        "extAuthz.openapi.url",
        Str,
        "none",
        "The app's `/openapi.json` URL (`http://` or `https://`, at most 1 MiB).",
    ),
    k(
        "extAuthz.openapi.timeoutMs",
        Int,
        "2000",
        "Timeout of the fetch from `url`, milliseconds.",
    ),
    k(
        "extAuthz.openapi.publicPassthrough",
        Bool,
        "false",
        "Pass operations marked public (`x-gatehouse-public: true`, `security: []`) through without a decision; otherwise they are decided like the others.",
    ),
    k(
        "extAuthz.openapi.baseUrl",
        Str,
        "origin of url",
        "Base of the fetch URLs in `x-gatehouse-attributes` that start with `/`.",
    ),
    k(
        "extAuthz.assertion",
        Object,
        "none",
        "A signed assertion (\"wristband\") added on allow as `<headerPrefix>assertion`: a short-lived Ed25519 JWT with `iss`, `aud`, `sub` (principal), `roles`, `jti` (decision id), `method`, `path`, `iat` and `exp`, whose public key is served as a JWKS at `GET /_gatehouse/jwks.json` on the HTTP listener. The app verifies it and refuses requests without a valid one (examples/fastapi/gatehouse_assertion.py), so forged `x-gatehouse-*` headers sent straight to the app are refused. Public routes carry none.",
    ),
    k(
        "extAuthz.assertion.keyFile",
        Str,
        "required",
        "Ed25519 private key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519 -out key.pem`), relative to this file.",
    ),
    k(
        "extAuthz.assertion.issuer",
        Str,
        "gatehouse",
        "`iss` of the tokens.",
    ),
    k(
        "extAuthz.assertion.audience",
        Str,
        "required",
        "`aud` of the tokens: the app that checks them.",
    ),
    k(
        "extAuthz.assertion.ttlSeconds",
        Int,
        "60",
        "Lifetime of a token, seconds (1 to 3600).",
    ),
    k(
        "extAuthz.principal",
        Object,
        "",
        "Where principals come from.",
    ),
    k(
        "extAuthz.principal.sources",
        OneOfList,
        "[]",
        "Sources, tried in order; the first that yields an identity wins, and an invalid credential is a 401.",
    ),
    k(
        "extAuthz.principal.sources[].jwtAuthn",
        Object,
        "none",
        "Claims verified by Envoy's `jwt_authn` filter (`payload_in_metadata`), from the CheckRequest's metadata.",
    ),
    k(
        "extAuthz.principal.sources[].jwtAuthn.namespace",
        Str,
        "envoy.filters.http.jwt_authn",
        "Metadata namespace of the filter.",
    ),
    k(
        "extAuthz.principal.sources[].jwtAuthn.payloadKey",
        Str,
        "\"\"",
        "Key of the payload; empty takes the first entry.",
    ),
    k(
        "extAuthz.principal.sources[].jwt",
        Object,
        "none",
        "A bearer JWT verified by Gatehouse.",
    ),
    k(
        "extAuthz.principal.sources[].jwt.header",
        Str,
        "authorization",
        "Header carrying `Bearer <token>`.",
    ),
    k(
        "extAuthz.principal.sources[].jwt.jwks",
        Object,
        "required",
        "Where the verification keys are: exactly one of `file` and `url`.",
    ),
    k(
        "extAuthz.principal.sources[].jwt.jwks.file",
        Str,
        "none",
        "A local JWKS (or PEM) file, relative to this file.",
    ),
    k(
        "extAuthz.principal.sources[].jwt.jwks.url",
        Str,
        "none",
        "Your identity provider's JWKS URL (TLS verified against the system store).",
    ),
    k(
        "extAuthz.principal.sources[].jwt.jwks.refreshSeconds",
        Int,
        "300",
        "Refresh interval of a remote set, seconds.",
    ),
    k(
        "extAuthz.principal.sources[].jwt.algorithms",
        StrList,
        "required",
        "Accepted algorithms, pinned (`RS256`, `ES256`, `EdDSA`, ...; shared-secret algorithms are refused).",
    ),
    k(
        "extAuthz.principal.sources[].jwt.issuer",
        Str,
        "none",
        "Required `iss`.",
    ),
    k(
        "extAuthz.principal.sources[].jwt.audiences",
        StrList,
        "[]",
        "Accepted audiences (any one must be in `aud`).",
    ),
    k(
        "extAuthz.principal.sources[].jwt.leewaySeconds",
        Int,
        "30",
        "Allowed clock skew, seconds.",
    ),
    k(
        "extAuthz.principal.sources[].mtls",
        Object,
        "none",
        "The mTLS peer identity (SPIFFE ID) Envoy reports.",
    ),
    k(
        "extAuthz.principal.sources[].mtls.trustXfcc",
        Bool,
        "false",
        "Also trust `x-forwarded-client-cert` (only behind an Envoy that sanitises it).",
    ),
    k(
        "extAuthz.principal.sources[].mtls.roles",
        StrList,
        "[]",
        "Roles given to mTLS peers.",
    ),
    k(
        "extAuthz.principal.sources[].headers",
        Object,
        "none",
        "Plain request headers: anyone can send them, so for development only (a warning is logged).",
    ),
    k(
        "extAuthz.principal.sources[].headers.id",
        Str,
        "required",
        "Header with the principal id.",
    ),
    k(
        "extAuthz.principal.sources[].headers.roles",
        Str,
        "none",
        "Header with comma-separated roles.",
    ),
    k(
        "extAuthz.principal.claims",
        Object,
        "",
        "How verified claims become the principal.",
    ),
    k(
        "extAuthz.principal.claims.id",
        Str,
        "sub",
        "Claim holding the principal id.",
    ),
    k(
        "extAuthz.principal.claims.roles",
        Str,
        "roles",
        "Claim holding the roles (a list, or a space or comma separated string).",
    ),
    k(
        "extAuthz.principal.claims.attr",
        StrList,
        "[]",
        "Claims copied into `P.attr` (`[\"*\"]` copies all).",
    ),
    k(
        "extAuthz.principal.anonymous",
        Object,
        "none",
        "The principal used when no source yields an identity; absent, such requests get 401.",
    ),
    k(
        "extAuthz.principal.anonymous.id",
        Str,
        "required",
        "Principal id.",
    ),
    k(
        "extAuthz.principal.anonymous.roles",
        StrList,
        "[]",
        "Roles.",
    ),
    k(
        "extAuthz.routes",
        ObjectList,
        "[]",
        "Request to resource and action. The first matching route wins; unmatched requests are denied.",
    ),
    k(
        "extAuthz.routes[].path",
        Str,
        "none",
        "Path template: literal segments and whole-segment `{name}` parameters; `{name:path}` as the last segment takes the rest. Give exactly one of `path` and `prefix`.",
    ),
    k(
        "extAuthz.routes[].prefix",
        Str,
        "none",
        "Path prefix (whole segments) instead of a template; always needs an explicit action.",
    ),
    k(
        "extAuthz.routes[].methods",
        StrList,
        "[] (every method)",
        "Methods the route matches.",
    ),
    k(
        "extAuthz.routes[].public",
        Bool,
        "false",
        "Allowed without a principal or a decision (health checks).",
    ),
    k(
        "extAuthz.routes[].backendHeaders",
        StrList,
        "all",
        "The headers this route's backend gets on allow, by their names under `headerPrefix`: `decision-id`, `principal`, `roles`, `principal-attr`, `derived-roles`, `outputs` (absent: all of them; `filter` and `assertion` are sent whenever they apply). The others are not sent, and client-sent copies of them are removed all the same. Each header costs Envoy about 5,000 instructions per request; leave out what the backend does not read.",
    ),
    k(
        "extAuthz.routes[].mode",
        Enum(&["enforce", "shadow"]),
        "none",
        "This route's enforcement mode; absent: `extAuthz.mode`.",
    ),
    k(
        "extAuthz.routes[].plan",
        Object,
        "none",
        "Ask for a query plan instead of a decision (a list route): Gatehouse plans `plan.action` on the route's resource kind for the principal (Cerbos's `PlanResources`, with the route's `policyVersion`, `scope` and attributes as known attributes). `KIND_ALWAYS_DENIED` is a 403 and the app is not asked; any other filter is allowed and handed to the backend in `<headerPrefix>filter` as compact JSON in Cerbos's filter shape (`{\"kind\": \"KIND_CONDITIONAL\", \"condition\": {...}}`, `KIND_ALWAYS_ALLOWED` too), for `cerbos-sqlalchemy` (examples/fastapi/gatehouse_filter.py). A filter larger than `extAuthz.maxFilterBytes` is a 503. Such a route has no `action`, `actions` or `resource.id`, and is not `public`.",
    ),
    k(
        "extAuthz.routes[].plan.action",
        Str,
        "required",
        "The action planned (`read`): the filter selects the resources of the kind the principal may do it to.",
    ),
    k(
        "extAuthz.routes[].resource",
        Object,
        "required unless public",
        "The Cerbos resource.",
    ),
    k(
        "extAuthz.routes[].resource.kind",
        Str,
        "required",
        "Resource kind (no placeholders).",
    ),
    k(
        "extAuthz.routes[].resource.id",
        Str,
        "\"\"",
        "Resource id: a template over the path's parameters (`{id}`).",
    ),
    k(
        "extAuthz.routes[].resource.policyVersion",
        Str,
        "\"\"",
        "Policy version (empty: `engine.defaultPolicyVersion`).",
    ),
    k(
        "extAuthz.routes[].resource.scope",
        Str,
        "\"\"",
        "Scope: a template over the path's parameters.",
    ),
    k(
        "extAuthz.routes[].action",
        Str,
        "see below",
        "The action, for every method of the route.",
    ),
    k(
        "extAuthz.routes[].actions",
        StrMap,
        "{}",
        "Per-method actions (`{PATCH: edit}`), before `action` and the defaults.",
    ),
    k(
        "extAuthz.routes[].attributes",
        Object,
        "",
        "Where `R.attr` comes from; later sources overwrite earlier ones in this order.",
    ),
    k(
        "extAuthz.routes[].attributes.pathParams",
        Bool,
        "false",
        "Copy the path parameters.",
    ),
    k(
        "extAuthz.routes[].attributes.query",
        StrMap,
        "{}",
        "`R.attr` name to query parameter.",
    ),
    k(
        "extAuthz.routes[].attributes.headers",
        StrMap,
        "{}",
        "`R.attr` name to request header.",
    ),
    k(
        "extAuthz.routes[].attributes.contextExtensions",
        StrList,
        "[]",
        "Envoy `context_extensions` keys copied.",
    ),
    k(
        "extAuthz.routes[].attributes.routeMetadata",
        StrList,
        "[]",
        "Keys of Envoy route metadata copied.",
    ),
    k(
        "extAuthz.routes[].attributes.body",
        StrList,
        "[]",
        "Top-level fields of the JSON request body copied (Envoy must send the body: `with_request_body`).",
    ),
    k(
        "extAuthz.routes[].attributes.fetch",
        Object,
        "none",
        "Attributes from your app over HTTP: a JSON object answered by `GET url`. Any failure denies (403).",
    ),
    k(
        "extAuthz.routes[].attributes.fetch.url",
        Str,
        "required",
        "URL template over the path's parameters (values are percent-encoded).",
    ),
    k(
        "extAuthz.routes[].attributes.fetch.timeoutMs",
        Int,
        "500",
        "Timeout, milliseconds.",
    ),
    k(
        "extAuthz.routes[].attributes.fetch.answerNotFound",
        Bool,
        "false",
        "Answer 404 Not Found when the source answers 404 (the record does not exist), after the principal is authenticated and before any policy is asked. Off, such a request is denied with 403 like any other failure, so that a denial does not reveal whether a record exists: turn it on only where existence is not a secret.",
    ),
    k(
        "extAuthz.routes[].attributes.fetch.cacheTtlMs",
        Int,
        "0",
        "How long an answer is reused, milliseconds (0: not cached).",
    ),
    // === audit ===
    k(
        "audit",
        Object,
        "",
        "The decision log: one JSON line per decision (tokens and headers are never logged). Reloaded on change and on SIGHUP.",
    ),
    k(
        "audit.mode",
        Enum(&["off", "sampled", "all"]),
        "off",
        "Which decisions are logged.",
    ),
    k(
        "audit.enabled",
        Bool,
        "none",
        "Cerbos's switch: `true` logs every decision unless `mode` says otherwise, `false` turns the log off.",
    ),
    k(
        "audit.sampleRate",
        Number,
        "none",
        "Fraction of decisions logged in `sampled` mode, 0 to 1 (required with `sampled`).",
    ),
    k(
        "audit.output",
        Enum(&["stdout", "file"]),
        "stdout",
        "Where lines go.",
    ),
    k(
        "audit.file",
        Object,
        "none",
        "The rotating file (required with `output: file`).",
    ),
    k(
        "audit.file.path",
        Str,
        "required",
        "The file, relative to this file.",
    ),
    k(
        "audit.file.maxBytes",
        Int,
        "104857600",
        "Size at which the file is rotated, bytes.",
    ),
    k("audit.file.keep", Int, "5", "Rotated files kept."),
    k(
        "audit.maskPaths",
        StrList,
        "[]",
        "Dotted paths (rooted at `principal` or `resource`, `*` for any key) whose values are logged as `\"***\"`.",
    ),
    k(
        "audit.includeAttributes",
        Bool,
        "false",
        "Log principal and resource attributes (masked by `maskPaths`).",
    ),
    k(
        "audit.queueCapacity",
        Int,
        "4096",
        "Records waiting for the writer; when full, `whenFull` applies.",
    ),
    k(
        "audit.whenFull",
        Enum(&["drop", "block"]),
        "drop",
        "With the queue full: `drop` the record (counted in `gatehouse_audit_dropped_total` and logged at most once a second), or `block` the decision until there is room.",
    ),
    // === metrics, tracing, telemetry ===
    k(
        "metrics",
        Object,
        "",
        "Prometheus metrics. Read at start only.",
    ),
    k("metrics.enabled", Bool, "true", "Serve `GET /metrics`."),
    k(
        "metrics.maxSeriesPerMetric",
        Int,
        "1000",
        "Most label combinations kept per metric; further ones are counted under `other`.",
    ),
    k(
        "tracing",
        Object,
        "",
        "OpenTelemetry spans. Read at start only.",
    ),
    k(
        "tracing.otlp",
        Object,
        "none",
        "Export spans over OTLP/HTTP; absent means off (unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set).",
    ),
    k(
        "tracing.otlp.endpoint",
        Str,
        "required",
        "Collector base URL (`http://host:4318`); a URL with a path is used as is.",
    ),
    k(
        "tracing.otlp.serviceName",
        Str,
        "gatehouse",
        "`service.name` of the spans.",
    ),
    k(
        "tracing.otlp.sampleRatio",
        Number,
        "1.0",
        "Fraction of new traces recorded; a request with a `traceparent` follows its sampled flag.",
    ),
    k(
        "tracing.otlp.headers",
        StrMap,
        "{}",
        "Headers sent with every export (a collector's API key).",
    ),
    k(
        "tracing.otlp.timeoutMs",
        Int,
        "5000",
        "Bound on one export request, milliseconds.",
    ),
    k(
        "tracing.otlp.queueCapacity",
        Int,
        "2048",
        "Spans waiting for export; when full, new spans are dropped and counted.",
    ),
    k(
        "tracing.otlp.batchSize",
        Int,
        "512",
        "Most spans in one export request.",
    ),
    k(
        "tracing.otlp.exportIntervalMs",
        Int,
        "1000",
        "Longest a span waits before its batch is sent, milliseconds.",
    ),
    k(
        "telemetry",
        Object,
        "none",
        "Cerbos's usage telemetry settings, accepted so a Cerbos file works; Gatehouse sends no usage telemetry.",
    ),
    k("telemetry.disabled", Bool, "false", "Accepted and ignored."),
    k(
        "telemetry.reportInterval",
        Str,
        "none",
        "Accepted and ignored.",
    ),
    k("telemetry.stateDir", Str, "none", "Accepted and ignored."),
];

/// The keys directly under `parent` ("" for the top level; `a.b[]` for a list's items).
pub(crate) fn children(parent: &str) -> impl Iterator<Item = &'static Key> + '_ {
    KEYS.iter().filter(move |k| match k.path.rsplit_once('.') {
        Some((p, _)) => p == parent,
        None => parent.is_empty(),
    })
}

/// The name of a key (its last path segment).
pub(crate) fn name(key: &Key) -> &'static str {
    key.path.rsplit_once('.').map_or(key.path, |(_, n)| n)
}

fn object_schema(parent: &str, one_of: bool) -> Value {
    let mut props = Map::new();
    for key in children(parent) {
        props.insert(name(key).to_string(), key_schema(key));
    }
    let mut schema = json!({"type": "object", "additionalProperties": false});
    let required: Vec<&str> = children(parent)
        .filter(|k| k.default == "required")
        .map(name)
        .collect();
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    if one_of {
        schema["minProperties"] = json!(1);
        schema["maxProperties"] = json!(1);
    }
    schema["properties"] = Value::Object(props);
    schema
}

fn key_schema(key: &Key) -> Value {
    let mut schema = match key.ty {
        Object => object_schema(key.path, false),
        ObjectList => {
            json!({"type": "array", "items": object_schema(&format!("{}[]", key.path), false)})
        }
        OneOfList => {
            json!({"type": "array", "items": object_schema(&format!("{}[]", key.path), true)})
        }
        Str => json!({"type": "string"}),
        Addr => json!({"type": "string", "pattern": "^([^:]+|\\[[0-9a-fA-F:.]+\\])?:[0-9]{1,5}$"}),
        Int => json!({"type": "integer", "minimum": 0}),
        Number => json!({"type": "number"}),
        Bool => json!({"type": "boolean"}),
        Enum(values) => json!({"type": "string", "enum": values}),
        StrList => json!({"type": "array", "items": {"type": "string"}}),
        StrMap => json!({"type": "object", "additionalProperties": {"type": "string"}}),
        AnyObject => json!({"type": "object"}),
    };
    if key.default == "none" {
        let ty = schema["type"].clone();
        schema["type"] = json!([ty, "null"]);
    }
    schema["description"] = json!(key.doc);
    schema
}

/// The JSON Schema (draft 2020-12) of `gatehouse.yaml`.
pub(crate) fn schema() -> Value {
    let mut root = object_schema("", false);
    let mut out = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gatehouse.invalid/gatehouse.schema.json",
        "title": "gatehouse.yaml",
        "description": "Gatehouse configuration (docs/configuration.md). Generated by `gatehouse config schema`.",
    });
    let obj = out.as_object_mut().expect("an object");
    for (k, v) in root.as_object_mut().expect("an object").iter_mut() {
        obj.insert(k.clone(), v.take());
    }
    out
}

/// One example per section: each is a whole `gatehouse.yaml` that loads (tested).
pub(crate) const EXAMPLES: &[(&str, &str)] = &[
    (
        "server",
        "server:\n  grpcListenAddr: 0.0.0.0:3593\n  httpListenAddr: \":3592\"\n  requestLimits: {maxResourcesPerRequest: 20}\n",
    ),
    (
        "policies",
        "policies:\n  git:\n    url: https://git.example.test/authz/policies.git\n    branch: main\n    subDir: policies\n    pollIntervalMs: 30000\n",
    ),
    (
        "storage",
        "storage:\n  driver: disk\n  disk: {directory: /policies, watchForChanges: true}\n",
    ),
    (
        "auxData",
        "auxData:\n  jwt:\n    keySets:\n      - id: idp\n        remote: {url: https://idp.example.test/.well-known/jwks.json, refreshInterval: 10m}\n    acceptableTimeSkew: 5s\n",
    ),
    (
        "engine",
        "engine:\n  defaultPolicyVersion: default\n  lenientScopeSearch: false\n  globals: {environment: production}\n",
    ),
    ("schema", "schema:\n  enforcement: reject\n"),
    (
        "extAuthz",
        "extAuthz:\n  headerPrefix: x-gatehouse-\n  denyBody: problem\n  principal:\n    sources:\n      - jwtAuthn: {namespace: envoy.filters.http.jwt_authn}\n      - jwt:\n          jwks: {url: https://idp.example.test/.well-known/jwks.json}\n          algorithms: [RS256]\n          issuer: https://idp.example.test\n          audiences: [documents-api]\n    claims: {id: sub, roles: roles, attr: [department]}\n  routes:\n    - path: /health\n      public: true\n    - path: /documents\n      methods: [GET]\n      resource: {kind: document, id: \"*\"}\n      action: list\n    - path: /documents/{id}\n      resource: {kind: document, id: \"{id}\"}\n      attributes:\n        fetch: {url: \"http://app:8000/internal/documents/{id}/attributes\", timeoutMs: 300, cacheTtlMs: 1000}\n    - path: /documents/{id}/share\n      methods: [POST]\n      resource: {kind: document, id: \"{id}\"}\n      action: share\n",
    ),
    (
        "audit",
        "audit:\n  mode: sampled\n  sampleRate: 0.1\n  output: file\n  file: {path: /var/log/gatehouse/audit.log, maxBytes: 104857600, keep: 5}\n  includeAttributes: true\n  maskPaths: [principal.attr.email]\n",
    ),
    (
        "metrics",
        "metrics:\n  enabled: true\n  maxSeriesPerMetric: 500\n",
    ),
    (
        "tracing",
        "tracing:\n  otlp: {endpoint: \"http://127.0.0.1:4318\", sampleRatio: 0.05}\n",
    ),
    ("telemetry", "telemetry:\n  disabled: true\n"),
];

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `docs/configuration.md`.
pub(crate) fn markdown() -> String {
    let mut out = String::from(
        "<!-- Generated by `gatehouse config docs` from src/config/reference.rs; a test fails when it is stale. -->\n\
# `gatehouse.yaml` reference\n\n\
`gatehouse serve --config FILE` reads this file (without `--config`, the bundled\n\
`gatehouse.yaml`, with paths relative to the working directory). Every key is checked when\n\
the file loads: an unknown key, a value of the wrong type or a route that could mean\n\
something else is an error naming `file:line:col`, with a \"did you mean\" hint for a\n\
misspelled key. Relative paths are relative to the file.\n\n\
A JSON Schema of the file is printed by `gatehouse config schema` (and kept in\n\
`docs/gatehouse.schema.json`); start your file with\n\
`# yaml-language-server: $schema=<path to gatehouse.schema.json>` and editors with the YAML\n\
language server complete and check it.\n\n\
## Reloading\n\n\
`extAuthz` (routes, principal sources, attribute sources, deny responses) and `audit` are\n\
reloaded when the file changes (checked every `policies.watchIntervalMs`, by content and\n\
through symbolic links, so a Kubernetes ConfigMap update is seen; not with\n\
`policies.watchForChanges: false`) and on `SIGHUP`. A file that does not load changes\n\
nothing: the configuration in force stays, and the errors are logged and shown under\n\
`config.lastError` in `GET /_gatehouse/status`. Every other section (listener addresses,\n\
the policy source, `engine`, `schema`, `auxData`, `metrics`, `tracing`) is read at start\n\
only: a change to it is logged as needing a restart and listed in `config.restartNeeded`.\n\n\
## Routes: how the action is chosen\n\n\
For a request, the first route whose `methods` and `path` (or `prefix`) match is used, and\n\
its action is, in this order: the route's `actions` entry for the method, its `action`,\n\
or the method's default: `GET` and `HEAD` `read`, `POST` `create`, `PUT` and `PATCH`\n\
`update`, `DELETE` `delete` (other methods have none, and are denied).\n\n\
The defaults apply only to plain paths: a **collection path** has no parameter\n\
(`/documents`), an **item path** has one parameter, as its last segment, that is the whole\n\
resource id (`/documents/{id}` with `id: \"{id}\"`). Any other route (a sub-resource or verb\n\
segment such as `/documents/{id}/share`, a nested collection such as `/orgs/{org}/documents`,\n\
a `prefix`) must name its action with `action`, or with `actions` for every method it\n\
lists; otherwise the file does not load. `gatehouse routes --config FILE` prints every\n\
route, each method's action and where that action comes from.\n\n\
## Placeholders\n\n\
`resource.id`, `resource.scope` and `attributes.fetch.url` are templates: each `{name}` is\n\
replaced by the path parameter `name` (percent-encoded in the URL). A `{name}` that is not\n\
one of the route's path parameters is an error at its line and column; there are no\n\
built-in placeholders. `resource.kind`, `resource.policyVersion` and the names in\n\
`attributes.headers` and `attributes.query` are not templates, and a `{` or `}` in them is\n\
an error.\n\n\
## Headers the backend receives\n\n\
On allow, Gatehouse adds `<headerPrefix>decision-id`, `<headerPrefix>principal`,\n\
`<headerPrefix>roles` (comma-separated), `<headerPrefix>principal-attr` (the principal's\n\
attributes as JSON), and when present `<headerPrefix>derived-roles` and\n\
`<headerPrefix>outputs` (JSON), and removes any header with the prefix that the client sent.\n\
An empty value is not sent (no roles, no attributes): an absent header is an empty one, and a\n\
client-sent copy is removed all the same. Denials carry `<headerPrefix>decision-id`.\n",
    );
    for section in children("") {
        out.push_str(&format!("\n## `{}`\n\n{}\n\n", section.path, section.doc));
        out.push_str("| key | type | default | description |\n|---|---|---|---|\n");
        for key in KEYS
            .iter()
            .filter(|k| k.path.starts_with(&format!("{}.", section.path)))
        {
            let default = match key.default {
                "" => "".to_string(),
                d => format!("`{d}`"),
            };
            out.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                key.path,
                escape_cell(&key.ty.describe()),
                escape_cell(&default),
                escape_cell(key.doc)
            ));
        }
        if let Some((_, example)) = EXAMPLES.iter().find(|(s, _)| *s == section.path) {
            out.push_str(&format!("\nExample:\n\n```yaml\n{example}```\n"));
        }
    }
    out
}
