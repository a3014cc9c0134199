"""OCI images: references, pulling (skopeo), storage (one OCI layout), unpacking (umoci).

All images live in one OCI image layout directory, ``ROOT/layout``; each image is one
entry of its ``index.json`` whose ``org.opencontainers.image.ref.name`` annotation is the
*encoded* normalised reference (see :func:`encode_tag`).  Blobs are shared between images.

Unpacked root filesystems are cached per manifest digest under ``ROOT/rootfs/<hex>``
(read-only by convention); each container gets an overlayfs on top of it (see ``oci.py``),
so starting a container never copies an image.

Every string that reaches skopeo or umoci has been validated here first; they are
passed as argv elements, never through a shell.
"""

from __future__ import annotations

import builtins
import fcntl
import ipaddress
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContainerError, InvalidArgument, NotFound, Unavailable

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
PULL_TIMEOUT = 1800.0

# The grammar of github.com/distribution/reference, without IPv6 literals.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]{{1,5}})?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})"
PATH_COMPONENT_RE = re.compile(rf"^{_PATH_COMPONENT}$")
DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)
DIGEST_RE = re.compile(rf"^{_DIGEST}$")
MAX_NAME_LENGTH = 255


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference: DOMAIN/PATH[:TAG][@DIGEST]."""

    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def is_loopback(self) -> bool:
        host = self.domain.rsplit(":", 1)[0] if ":" in self.domain else self.domain
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def parse_reference(ref: str) -> Reference:
    """Parse and normalise a reference as Docker does, or raise InvalidArgument."""
    bad = f"invalid image reference {ref!r}"
    if not isinstance(ref, str) or not ref or len(ref) > 512:
        raise InvalidArgument(f"{bad}: empty or too long")
    if ref != ref.strip() or any(c.isspace() or ord(c) < 32 for c in ref):
        raise InvalidArgument(f"{bad}: contains whitespace or control characters")
    if "://" in ref:
        raise InvalidArgument(f"{bad}: give a reference such as nginx:latest, not a URL")
    rest, at, digest = ref.partition("@")
    if at:
        if not DIGEST_RE.match(digest):
            raise InvalidArgument(f"{bad}: bad digest {digest!r} (expected sha256:<64 hex>)")
    tag: str | None = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not TAG_RE.match(tag):
            raise InvalidArgument(f"{bad}: bad tag {tag!r}")
    parts = rest.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        domain, path_parts = first, parts[1:]
        if not DOMAIN_RE.match(domain):
            raise InvalidArgument(f"{bad}: bad registry host {domain!r}")
        if ":" in domain:
            port = int(domain.rsplit(":", 1)[1])
            if not 1 <= port <= 65535:
                raise InvalidArgument(f"{bad}: bad registry port in {domain!r}")
    else:
        domain, path_parts = DEFAULT_DOMAIN, parts
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    for part in path_parts:
        if not PATH_COMPONENT_RE.match(part):
            hint = " (repository names must be lowercase)" if part.lower() != part else ""
            raise InvalidArgument(f"{bad}: bad repository name component {part!r}{hint}")
    path = "/".join(path_parts)
    if domain == DEFAULT_DOMAIN and len(path_parts) == 1:
        path = OFFICIAL_PREFIX + path
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{bad}: name longer than {MAX_NAME_LENGTH} characters")
    if tag is None and not at:
        tag = "latest"
    return Reference(domain=domain, path=path, tag=tag, digest=digest or None)


def normalize_reference(ref: str) -> str:
    """``nginx`` -> ``docker.io/library/nginx:latest``; raises InvalidArgument on bad refs."""
    return str(parse_reference(ref))


def encode_tag(ref: Reference) -> str:
    """The OCI layout tag for a normalised reference.

    OCI ref names allow ``[A-Za-z0-9._-]`` separated by ``:`` or ``/``; only ``@`` of a
    digest reference is outside that, so it becomes ``:``.  Decoding counts the colons in
    the last path component: name[:tag][:alg:hex].
    """
    return str(ref).replace("@", ":")


def decode_tag(tag: str) -> str | None:
    """The normalised reference for a layout tag, or None if it is not one of ours."""
    head, slash, last = tag.rpartition("/")
    if not slash:
        return None
    parts = last.split(":")
    if len(parts) == 2:
        text = tag
    elif len(parts) == 3:
        text = f"{head}/{parts[0]}@{parts[1]}:{parts[2]}"
    elif len(parts) == 4:
        text = f"{head}/{parts[0]}:{parts[1]}@{parts[2]}:{parts[3]}"
    else:
        return None
    try:
        return normalize_reference(text)
    except InvalidArgument:
        return None


@dataclass(frozen=True)
class ImageInfo:
    reference: str  # normalised
    digest: str  # manifest digest, sha256:...
    config_digest: str
    size: int  # compressed: manifest + config + layers
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    working_dir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)
    created: str = ""
    architecture: str = ""
    os: str = ""
    layers: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.config_digest

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "id": self.config_digest,
            "size": self.size,
            "created": self.created,
            "architecture": self.architecture,
            "os": self.os,
            "layers": list(self.layers),
            "config": {
                "Entrypoint": list(self.entrypoint),
                "Cmd": list(self.cmd),
                "Env": list(self.env),
                "WorkingDir": self.working_dir,
                "User": self.user,
                "Labels": dict(self.labels),
                "ExposedPorts": list(self.exposed_ports),
            },
        }


def _strlist(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


OFFLINE_HINT = "load the image with `container image load -i FILE` when offline"


def _skopeo_cause(text: str) -> str:
    """The innermost cause of skopeo's Go error chain: what follows the request that failed
    (`Get "https://...": CAUSE`), else the dial/lookup, else the last two links."""
    text = text.rstrip('"')
    request = re.search(r'(?:Get|Head|Post|Put) "[^"]*": (.*)$', text)
    if request:
        return request.group(1)
    for marker in ("dial tcp", "lookup "):
        cut = text.find(marker)
        if cut >= 0:
            return text[cut:]
    return ": ".join(text.split(": ")[-2:])


def _classify_skopeo_error(ref: Reference, stderr: str) -> ContainerError:
    """One line for the user: what failed, its cause (skopeo's innermost error) and what
    to do about it. Registry failures start with `registry NAME` (the CLI prefixes it with
    `image REF not found locally and` when it was pulling a missing image)."""
    text = " ".join(stderr.strip().splitlines()[-3:])
    text = re.sub(r'^time="[^"]*" level=\w+ msg="', "", text)
    low = text.lower()
    cause = _skopeo_cause(text) if text else "skopeo failed"
    registry = f"registry {ref.domain}"
    unreachable = (
        "connection refused",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "no route to host",
        "temporary failure in name resolution",
        "connection reset",
        "tls handshake timeout",
        "server misbehaving",
        "context deadline exceeded",
        "eof",
    )
    not_found = (
        "manifest unknown",
        "name unknown",
        "not found",
        "requested access to the resource is denied",
        "repository name not known",
        "no image found",
        "does not match",
    )
    if any(s in low for s in not_found):
        return NotFound(f"image {ref} not found in {registry}")
    plain_http = ("http response to https client", "does not look like a tls handshake")
    if any(s in low for s in plain_http):
        return Unavailable(
            f"{registry} speaks plain HTTP, not HTTPS ({cause}); "
            "pull with --insecure if you trust it"
        )
    if "x509:" in low or "certificate" in low:
        return Unavailable(
            f"{registry} failed TLS verification ({cause}); "
            "pull with --insecure to skip it for a registry you trust"
        )
    if any(s in low for s in unreachable):
        return Unavailable(
            f"{registry} is unreachable ({cause}); check the network, or {OFFLINE_HINT}"
        )
    if "unauthorized" in low or "authentication required" in low:
        return NotFound(f"image {ref} not found in {registry} (or access denied)")
    return ContainerError(
        f"pulling {ref} from {registry} failed ({cause}); check the network and the "
        f"reference (--insecure for a plain-HTTP registry), or {OFFLINE_HINT}"
    )


class ImageStore:
    """All images of one instance in one OCI layout (``root/layout``)."""

    def __init__(self, root: Path) -> None:
        root = Path(root).absolute()
        if ":" in str(root):
            raise InvalidArgument(f"image store path {root} must not contain ':'")
        self.root = root
        self.layout = root / "layout"
        self.rootfs_dir = root / "rootfs"
        self._lock_path = root / ".lock"

    # --- internals -------------------------------------------------------------------

    def _ensure(self) -> None:
        if not (self.layout / "index.json").exists():
            self.root.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not (self.layout / "index.json").exists():
                    tmp = Path(tempfile.mkdtemp(prefix=".layout-", dir=self.root))
                    (tmp / "blobs" / "sha256").mkdir(parents=True)
                    (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
                    (tmp / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')
                    if self.layout.exists():
                        shutil.rmtree(self.layout)
                    tmp.rename(self.layout)
        self.rootfs_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _index(self) -> dict[str, Any]:
        try:
            data = json.loads((self.layout / "index.json").read_text())
        except FileNotFoundError:
            return {"schemaVersion": 2, "manifests": []}
        return data if isinstance(data, dict) else {"schemaVersion": 2, "manifests": []}

    def _blob(self, digest: str) -> bytes:
        if not DIGEST_RE.match(digest):
            raise ContainerError(f"corrupt image store: bad digest {digest!r}")
        alg, hexd = digest.split(":", 1)
        return (self.layout / "blobs" / alg / hexd).read_bytes()

    def _entries(self) -> dict[str, dict[str, Any]]:
        """normalised ref -> index descriptor."""
        out: dict[str, dict[str, Any]] = {}
        for desc in self._index().get("manifests", []):
            tag = (desc.get("annotations") or {}).get(REF_NAME_ANNOTATION)
            if isinstance(tag, str):
                ref = decode_tag(tag)
                if ref is not None:
                    out[ref] = desc
        return out

    def _info(self, ref: str, desc: dict[str, Any]) -> ImageInfo:
        digest = str(desc["digest"])
        manifest = json.loads(self._blob(digest))
        if "manifests" in manifest:  # an index: take the first linux manifest
            sub = next(
                (m for m in manifest["manifests"] if m.get("platform", {}).get("os") == "linux"),
                manifest["manifests"][0],
            )
            digest = str(sub["digest"])
            manifest = json.loads(self._blob(digest))
        cdesc = manifest["config"]
        config = json.loads(self._blob(str(cdesc["digest"])))
        cfg = config.get("config") or {}
        layers = manifest.get("layers") or []
        size = int(desc.get("size", 0)) + int(cdesc.get("size", 0))
        size += sum(int(layer.get("size", 0)) for layer in layers)
        return ImageInfo(
            reference=ref,
            digest=digest,
            config_digest=str(cdesc["digest"]),
            size=size,
            entrypoint=_strlist(cfg.get("Entrypoint")),
            cmd=_strlist(cfg.get("Cmd")),
            env=_strlist(cfg.get("Env")),
            working_dir=str(cfg.get("WorkingDir") or ""),
            user=str(cfg.get("User") or ""),
            labels={str(k): str(v) for k, v in (cfg.get("Labels") or {}).items()},
            exposed_ports=sorted(str(p) for p in (cfg.get("ExposedPorts") or {})),
            created=str(config.get("created") or ""),
            architecture=str(config.get("architecture") or ""),
            os=str(config.get("os") or ""),
            layers=[str(layer.get("digest")) for layer in layers],
        )

    def _run(self, argv: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )

    # --- public API ------------------------------------------------------------------

    def pull(
        self,
        ref: str,
        insecure: bool = False,
        progress: Callable[[str], None] | None = None,
    ) -> ImageInfo:
        parsed = parse_reference(ref)
        self._ensure()
        argv = [SKOPEO, "--insecure-policy", "copy", "--retry-times", "0"]
        if insecure or parsed.is_loopback:
            argv.append("--src-tls-verify=false")
        argv += [f"docker://{parsed}", f"oci:{self.layout}:{encode_tag(parsed)}"]
        with self._locked():
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None and proc.stderr is not None
            try:
                for line in proc.stdout:
                    if progress is not None and line.strip():
                        progress(line.rstrip("\n"))
                stderr = proc.stderr.read()
                rc = proc.wait(timeout=PULL_TIMEOUT)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if rc != 0:
            raise _classify_skopeo_error(parsed, stderr)
        return self.inspect(str(parsed))

    def list(self) -> list[ImageInfo]:
        if not (self.layout / "index.json").exists():
            return []
        with self._locked(shared=True):
            return [self._info(ref, desc) for ref, desc in sorted(self._entries().items())]

    def inspect(self, ref: str) -> ImageInfo:
        norm = normalize_reference(ref)
        with self._locked(shared=True):
            desc = self._entries().get(norm)
            if desc is None:
                raise NotFound(f"image {norm} not found locally")
            return self._info(norm, desc)

    def exists(self, ref: str) -> bool:
        norm = normalize_reference(ref)
        with self._locked(shared=True):
            return norm in self._entries()

    def delete(self, ref: str) -> None:
        """Remove the tag, garbage-collect blobs, and drop an unused unpacked rootfs."""
        norm = normalize_reference(ref)
        tag = encode_tag(parse_reference(norm))
        with self._locked():
            index = self._index()
            manifests = index.get("manifests", [])
            keep = [
                d for d in manifests if (d.get("annotations") or {}).get(REF_NAME_ANNOTATION) != tag
            ]
            if len(keep) == len(manifests):
                raise NotFound(f"image {norm} not found locally")
            gone = {str(d["digest"]) for d in manifests} - {str(d["digest"]) for d in keep}
            index["manifests"] = keep
            tmp = self.layout / ".index.json.tmp"
            tmp.write_text(json.dumps(index))
            tmp.rename(self.layout / "index.json")
            gc = self._run([UMOCI, "gc", "--layout", str(self.layout)])
            if gc.returncode != 0:
                raise ContainerError(f"umoci gc failed: {gc.stderr.strip()}")
            mounts = Path("/proc/self/mountinfo").read_text()
            for digest in gone:
                cached = self.rootfs_dir / digest.split(":", 1)[1]
                if cached.exists() and str(cached) not in mounts:
                    shutil.rmtree(cached, ignore_errors=True)

    def load(self, archive_path: Path) -> builtins.list[ImageInfo]:
        """Import an oci-archive or docker-archive tar; returns the images it held."""
        path = Path(archive_path).absolute()
        if ":" in str(path):
            raise InvalidArgument(f"archive path {path} must not contain ':'")
        if not path.is_file():
            raise NotFound(f"archive {path} not found")
        stem = re.sub(r"[^a-z0-9]+", "-", path.name.split(".")[0].lower()).strip("-") or "image"
        sources: list[tuple[str, Reference]] = []
        try:
            with tarfile.open(path) as tar:
                names = {m.name.lstrip("./") for m in tar.getmembers()}
                if "manifest.json" in names:
                    member = tar.extractfile(tar.getmember(_member(tar, "manifest.json")))
                    assert member is not None
                    manifest = json.loads(member.read())
                    for i, entry in enumerate(manifest):
                        tags = entry.get("RepoTags") or [f"localhost/{stem}:{i or 'latest'}"]
                        for t in tags:
                            sources.append((f"docker-archive:{path}:@{i}", parse_reference(t)))
                elif "index.json" in names:
                    member = tar.extractfile(tar.getmember(_member(tar, "index.json")))
                    assert member is not None
                    index = json.loads(member.read())
                    for i, desc in enumerate(index.get("manifests", [])):
                        name = (desc.get("annotations") or {}).get(REF_NAME_ANNOTATION)
                        if name and ("/" in name or ":" in name):
                            sources.append((f"oci-archive:{path}:{name}", parse_reference(name)))
                        elif name:
                            ref = parse_reference(f"localhost/{stem}:{name}")
                            sources.append((f"oci-archive:{path}:{name}", ref))
                        elif len(index.get("manifests", [])) == 1:
                            ref = parse_reference(f"localhost/{stem}:latest")
                            sources.append((f"oci-archive:{path}", ref))
                        else:
                            raise InvalidArgument(
                                f"archive {path}: manifest {i} has no reference name"
                            )
                else:
                    raise InvalidArgument(
                        f"archive {path} is neither an OCI nor a Docker image archive"
                    )
        except (tarfile.TarError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"archive {path} is not a valid image archive: {exc}") from None
        self._ensure()
        out = []
        with self._locked():
            for src, ref in sources:
                proc = self._run(
                    [
                        SKOPEO,
                        "--insecure-policy",
                        "copy",
                        src,
                        f"oci:{self.layout}:{encode_tag(ref)}",
                    ],
                    timeout=PULL_TIMEOUT,
                )
                if proc.returncode != 0:
                    raise ContainerError(f"loading {path} failed: {proc.stderr.strip()}")
        for _, ref in sources:
            out.append(self.inspect(str(ref)))
        return out

    def rootfs(self, ref_or_info: str | ImageInfo) -> Path:
        """The cached, unpacked root filesystem of an image (unpacked once per digest)."""
        info = ref_or_info if isinstance(ref_or_info, ImageInfo) else self.inspect(ref_or_info)
        cached = self.rootfs_dir / info.digest.split(":", 1)[1]
        if cached.is_dir():
            return cached
        self._ensure()
        with self._locked():
            if cached.is_dir():
                return cached
            tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=self.rootfs_dir))
            try:
                dest = tmp / "rootfs"
                proc = self._run(
                    [
                        UMOCI,
                        "raw",
                        "unpack",
                        "--image",
                        f"{self.layout}:{encode_tag(parse_reference(info.reference))}",
                        str(dest),
                    ],
                    timeout=PULL_TIMEOUT,
                )
                if proc.returncode != 0:
                    raise ContainerError(
                        f"unpacking {info.reference} failed: {proc.stderr.strip()}"
                    )
                dest.rename(cached)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return cached

    def unpack(self, ref: str, dest: Path) -> None:
        """Copy the image's root filesystem into ``dest`` (slow path; containers use
        :meth:`rootfs` + overlayfs instead)."""
        src = self.rootfs(ref)
        dest = Path(dest)
        if dest.exists() and any(dest.iterdir()):
            raise InvalidArgument(f"unpack destination {dest} is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        proc = self._run(["cp", "-a", "--", f"{src}/.", str(dest)], timeout=PULL_TIMEOUT)
        if proc.returncode != 0:
            raise ContainerError(f"unpacking into {dest} failed: {proc.stderr.strip()}")


def _member(tar: tarfile.TarFile, name: str) -> str:
    for candidate in (name, f"./{name}"):
        try:
            tar.getmember(candidate)
            return candidate
        except KeyError:
            continue
    raise KeyError(name)
