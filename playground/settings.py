"""Settings for Playground. Every variable is read here, once, and documented in .env.example."""

import os
import tempfile
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")  # optional; real environment variables win

# Off unless asked for, so a server started without settings is a production one.
# Development asks: `make run`, `make test`, `make lint` and the test suite
# (tests/settings.py) set DEBUG=true; `make serve` refuses it (playground/startup.py).
DEBUG = env.bool("DEBUG", default=False)
if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "Set SECRET_KEY (50+ random characters) when DEBUG is false, "
            "or DEBUG=true for development (`make run` does)."
        )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "playground.admin_site.StaffOnlyAdminConfig",  # django.contrib.admin, for staff only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "chat",
]

MIDDLEWARE = [
    # First: nothing before it may read a body over the limit.
    "playground.body_limits.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "playground.middleware.StaticFilesMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "playground.urls"
WSGI_APPLICATION = "playground.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chat.context_processors.upstream",
                "chat.context_processors.accounts",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# 0: under ASGI every request runs in a thread of its own, so a connection kept for
# the next request would never be reused (SQLite's are pooled instead, below;
# chat/database_thread.py keeps its own).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, with closed connections kept for the next request's thread.
    DATABASES["default"]["ENGINE"] = "playground.sqlite_pool"
    # WAL lets readers work while a reply is being written; IMMEDIATE transactions
    # and a busy timeout turn "database is locked" into a short wait.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The test database is a file, not Django's shared in-memory one: the live server
    # streams compare columns from several threads at once, and one SQLite connection
    # shared between threads fails ("bad parameter or other API misuse").
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"playground-test-{os.getpid()}.sqlite3")
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "conversation_list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://playground")}

# --- Security headers -------------------------------------------------------
# Everything the page loads is served by the app; model output can never load
# a remote resource or run a script.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- The upstream ------------------------------------------------------------
# With neither a key nor a base URL configured, the app talks to the built-in
# offline demo endpoint (`manage.py demo_upstream`, started by `make run`).
DEMO_UPSTREAM_PORT = env.int("DEMO_UPSTREAM_PORT", default=8001)
UPSTREAM_API_KEY = env.str("UPSTREAM_API_KEY", default="")
UPSTREAM_DEMO = not UPSTREAM_API_KEY and not env.str("UPSTREAM_BASE_URL", default="")
UPSTREAM_BASE_URL = (
    f"http://127.0.0.1:{DEMO_UPSTREAM_PORT}/v1"
    if UPSTREAM_DEMO
    else env.str("UPSTREAM_BASE_URL", default="https://api.aimlapi.com/v1")
).rstrip("/")
UPSTREAM_CONNECT_TIMEOUT = env.float("UPSTREAM_CONNECT_TIMEOUT", default=5.0)
UPSTREAM_READ_TIMEOUT = env.float("UPSTREAM_READ_TIMEOUT", default=120.0)
UPSTREAM_MAX_RETRIES = env.int("UPSTREAM_MAX_RETRIES", default=2)
UPSTREAM_RETRY_MAX_WAIT = env.float("UPSTREAM_RETRY_MAX_WAIT", default=10.0)
UPSTREAM_MODELS_CACHE_SECONDS = env.int("UPSTREAM_MODELS_CACHE_SECONDS", default=3600)
UPSTREAM_FALLBACK_MODELS = env.list(
    "UPSTREAM_FALLBACK_MODELS",
    default=["anthropic/claude-sonnet-4.5", "openai/gpt-4o", "deepseek/deepseek-r1"],
)
DEFAULT_MODEL = env.str("DEFAULT_MODEL", default="anthropic/claude-sonnet-4.5")

# --- Limits on what the upstream sends ---------------------------------------
# Decompressed bytes of one reply, streamed or not: past it a stream ends
# Interrupted (the text so far kept), a non-streamed reply Failed.
UPSTREAM_MAX_REPLY_BYTES = env.int("UPSTREAM_MAX_REPLY_BYTES", default=8 * 1024 * 1024)
# Seconds one reply may take from the request to its last byte, streamed or not.
UPSTREAM_MAX_STREAM_SECONDS = env.float("UPSTREAM_MAX_STREAM_SECONDS", default=900.0)

# --- Limits on the catalogue and schema documents ---------------------------
# Both come from the upstream and are untrusted input (chat/client.py, chat/catalogue.py).
UPSTREAM_MAX_MODELS = env.int("UPSTREAM_MAX_MODELS", default=1_000)
UPSTREAM_MAX_CATALOGUE_BYTES = env.int("UPSTREAM_MAX_CATALOGUE_BYTES", default=8_388_608)
UPSTREAM_MAX_SCHEMA_BYTES = env.int("UPSTREAM_MAX_SCHEMA_BYTES", default=4_194_304)
# The whole of one catalogue or schema fetch, connecting included: a page that needs
# one waits no longer than this.
UPSTREAM_FETCH_SECONDS = env.float("UPSTREAM_FETCH_SECONDS", default=3.0)

# --- Limits on what a user can send ----------------------------------------
MAX_MESSAGE_CHARS = env.int("MAX_MESSAGE_CHARS", default=100_000)
MAX_SYSTEM_PROMPT_CHARS = env.int("MAX_SYSTEM_PROMPT_CHARS", default=100_000)
MAX_MESSAGES_PER_CONVERSATION = env.int("MAX_MESSAGES_PER_CONVERSATION", default=2_000)
MAX_EXTRA_PARAMS_BYTES = env.int("MAX_EXTRA_PARAMS_BYTES", default=16_384)
# Spend protection: upstream calls per user per minute, counted across all app
# processes (0 turns the limit off).
UPSTREAM_CALLS_PER_MINUTE = env.int("UPSTREAM_CALLS_PER_MINUTE", default=30)
# The same across all users: accounts cost nothing to make, the operator's key does.
UPSTREAM_CALLS_PER_MINUTE_GLOBAL = env.int("UPSTREAM_CALLS_PER_MINUTE_GLOBAL", default=120)
# How much one call may ask for: replies ("n") and tokens per reply (max_tokens and
# its spellings; a model's own catalogue limit, when lower, applies too).
MAX_CHOICES = env.int("MAX_CHOICES", default=8)
MAX_OUTPUT_TOKENS = env.int("MAX_OUTPUT_TOKENS", default=65_536)

# --- Limits on request bodies and imports -------------------------------------
# Held before a body is read (playground/body_limits.py): a larger request is
# answered 413 at once, under ASGI and WSGI. The import form may carry a file of
# MAX_IMPORT_BYTES (and its form fields); its upload stops there while it streams.
MAX_REQUEST_BYTES = env.int("MAX_REQUEST_BYTES", default=2_621_440)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
MAX_IMPORT_BYTES = env.int("MAX_IMPORT_BYTES", default=10_485_760)
MAX_IMPORT_CONVERSATIONS = env.int("MAX_IMPORT_CONVERSATIONS", default=1_000)
# Files attached to a message (images and PDFs): per file, per message, and how many.
# A message's form may carry MAX_MESSAGE_ATTACHMENT_BYTES beside MAX_REQUEST_BYTES.
MAX_ATTACHMENT_BYTES = env.int("MAX_ATTACHMENT_BYTES", default=10_485_760)
MAX_MESSAGE_ATTACHMENT_BYTES = env.int("MAX_MESSAGE_ATTACHMENT_BYTES", default=20_971_520)
MAX_ATTACHMENTS_PER_MESSAGE = env.int("MAX_ATTACHMENTS_PER_MESSAGE", default=8)
FILE_UPLOAD_HANDLERS = [
    "playground.body_limits.UploadLimitHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

# --- Accounts: sign-up, log-in and their throttles ---------------------------
# Who may make an account: anyone (open), holders of an invitation link made with
# `manage.py invite` (invite), or nobody (closed: the operator runs createsuperuser).
# Development (`make run`) signs up freely; anything else is by invitation unless the
# operator opens it.
SIGNUP_MODES = ("open", "invite", "closed")
SIGNUP_MODE = env.str("SIGNUP_MODE", default="open" if DEBUG else "invite").strip().lower()
if SIGNUP_MODE not in SIGNUP_MODES:
    raise ImproperlyConfigured(f"SIGNUP_MODE must be one of {', '.join(SIGNUP_MODES)}.")
# Failed log-ins, per username and per client address, before log-ins are refused
# until the window of LOGIN_THROTTLE_MINUTES ends (0 turns a counter off).
LOGIN_FAILURES_PER_USERNAME = env.int("LOGIN_FAILURES_PER_USERNAME", default=5)
LOGIN_FAILURES_PER_IP = env.int("LOGIN_FAILURES_PER_IP", default=20)
LOGIN_THROTTLE_MINUTES = max(1, env.int("LOGIN_THROTTLE_MINUTES", default=15))
# Sign-up attempts (each submit) per client address per clock hour (0: no limit).
SIGNUPS_PER_IP_PER_HOUR = env.int("SIGNUPS_PER_IP_PER_HOUR", default=10)
# Behind a proxy every request comes from the proxy's address: name the header it
# sets to the client's (X-Real-IP, or X-Forwarded-For, whose last entry is used).
# Empty: the connection's own address. Only set it when a proxy always sets it.
CLIENT_IP_HEADER = env.str("CLIENT_IP_HEADER", default="")

# --- Limits on the pages that show a call -------------------------------------
# Characters of one stored body (or of a stream's events) that a page shows; past
# it the first part and a note, the whole in the download and the export. A reply
# may be UPSTREAM_MAX_REPLY_BYTES, and a page costs the worker many times its size.
MAX_SHOWN_CHARS = env.int("MAX_SHOWN_CHARS", default=65_536)

# --- Limits on formatting ----------------------------------------------------
# Model output and stored records are formatted for reading only within these
# bounds (chat/formatting.py, chat/markdown.py); past them the exact text is shown
# as received, with a note saying why, and code is shown plain.
MAX_FORMAT_CHARS = env.int("MAX_FORMAT_CHARS", default=262_144)
MAX_FORMAT_DEPTH = env.int("MAX_FORMAT_DEPTH", default=32)
MAX_MARKDOWN_CHARS = env.int("MAX_MARKDOWN_CHARS", default=131_072)
MAX_HIGHLIGHT_CHARS = env.int("MAX_HIGHLIGHT_CHARS", default=65_536)
HIGHLIGHT_TIME_BUDGET = env.float("HIGHLIGHT_TIME_BUDGET", default=0.5)
# The common languages whose Pygments lexer never spends long on one token of
# hostile input, so that the time budget holds (bench/highlight_lexers.py; it
# refused ini, console, matlab and ocaml: one token took 20-50 s). Any alias counts.
HIGHLIGHT_LANGUAGES = env.list(
    "HIGHLIGHT_LANGUAGES",
    default=[
        "python", "javascript", "typescript", "jsx", "tsx", "json", "json5", "yaml", "toml",
        "bash", "powershell", "batch", "html", "xml", "css", "scss", "sass", "less", "sql",
        "postgresql", "mysql", "c", "cpp", "csharp", "java", "kotlin", "go", "rust", "ruby",
        "php", "swift", "scala", "haskell", "lua", "perl", "r", "dart", "docker", "make",
        "diff", "markdown", "text", "graphql", "nginx", "elixir", "erlang", "julia",
        "objective-c", "latex", "zig", "clojure", "fsharp", "vbnet", "groovy", "terraform",
        "protobuf", "cmake", "nix", "solidity", "nasm", "wast", "django", "properties",
        "apacheconf", "http", "rst", "fortran", "pascal", "scheme", "lisp", "elm", "d",
        "verilog", "awk", "vim", "tcl", "coffeescript",
    ],
)  # fmt: skip
MARKDOWN_CACHE_BYTES = env.int("MARKDOWN_CACHE_BYTES", default=33_554_432)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.server": {"level": "WARNING" if not DEBUG else "INFO"},
        # httpx logs every request at INFO; the ApiCall records say more.
        "httpx": {"level": "WARNING"},
    },
}
