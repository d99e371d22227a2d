#!/usr/bin/env python3
"""Reference expectations for the Mastodon and Bluesky Jetstream decoders, worked out independently of
the Rust code.

Reads the recorded fixtures (``../shared/fixtures/mastodon`` and ``bluesky``, or ``$TAGFLOW_FIXTURES``),
applies the rules of ``shared/PROTOCOLS.md`` as written here, and writes one
``tests/expected/social/<fixture>.json`` per fixture: the record counts, the per-kind totals of decoded
interactions (per record, before aggregation), the users with their latest handle and name, the
aggregated map (from, to, kind) -> count over distinct posts, the posts left after edits and deletes,
and a reconciliation with ``fixtures/SOURCES.md``. ``tests/decode_social.rs`` compares the decoders
against these files.

How a fixture is replayed (the Rust test does the same):

- ``mastodon/api/<cassette>__N.json`` files are grouped by cassette and replayed in N order. Each is
  ``{request, status, headers, body}``. Responses to DELETE requests are skipped (their body is the
  status being deleted, not a status seen), as are non-200 responses. A body that is a Status, a list of
  Statuses (timelines) or a Context (``ancestors`` + ``descendants``) gives one Post record per status;
  the body of ``.../reblogged_by`` is a list of Accounts whose keys join the users. Anything else
  (instance info, notifications, trends, accounts) is not a tagflow input and is skipped. The instance
  domain is the host of the request URI (checked to give the same result as the ``account.url``
  fallback).
- ``mastodon/*.sse`` bodies are parsed as server-sent events (WHATWG rules; the trailing partial line is
  dropped) and each event decoded with the instance unknown (``account.url`` hosts are used: the docs
  examples come from several servers): ``update`` -> Post, ``status.update`` -> Edit, ``delete`` ->
  Delete of the bare (instance-local) id, anything else -> Ignored.
- ``mastodon/docs_websocket_examples.json`` is a list of frames ``{stream, event, payload}``, each
  decoded like an event with the payload as its data.
- ``bluesky/*.jsonl``: one Jetstream event per line.

Aggregation (what the graph would hold): a Post with an unseen id is added, a Post with a seen id changes
nothing, an Edit replaces (or adds) the post, a Delete removes the post with exactly that id. Mastodon
delete ids are instance-local ids while post ids are URIs, so they remove nothing here (the live source
translates them); the script checks that translating them would not change the edges either, since the
deleted statuses carry no interactions. Users are every author and interaction endpoint of every Post
or Edit applied, plus reblogged_by accounts; an identity handle (Profile) updates a known user only.

Rule choices (PROTOCOLS.md, and where SOURCES.md counts differently):

- Mastodon reply: ``in_reply_to_account_id`` is an instance-local id; it is resolved through the
  ``mentions[]`` entry with that id; a reply to oneself is a self-loop and is skipped; an id that no
  mention carries is ``unresolvable`` and is skipped. SOURCES.md counts every status with an
  ``in_reply_to_account_id`` as a resolvable reply (e.g. test_id_hook_in_reply_to reply=1, a self-reply;
  test_entity_quote reply=1, to an account no mention names), hence the ``self_loop`` and
  ``unresolvable`` drops.
- A reply also mentions its target (Mastodon puts it in ``mentions[]``): both count, as in SOURCES.md
  (docs_streaming_examples reply=3 mention=3 resolvable_edges=6).
- Quote: only ``quote.state == "accepted"`` with a ``quoted_status`` (or a legacy ``quote`` that is a
  Status). Boost: ``reblog.account``; the boosted status's own mentions are not the booster's. The test
  server's boosts and quotes are all of the user's own statuses: SOURCES.md counts them
  (test_status_reblogged_by reblog=2), the decoder drops them as self-loops.
- SOURCES.md counts per status entity seen (a status in three events counts three times); the edges
  below count distinct posts, so docs_streaming_examples has reply=3 in ``totals`` but one reply edge.
- Jetstream: reply to ``reply.parent.uri``'s DID (the root is only a ref), quote of
  ``embed.record(.record).uri`` when it is an ``app.bsky.feed.post``, mention facets, repost of
  ``subject.uri``'s DID. SOURCES.md's reply=8 includes two self-replies in a thread (corpus), dropped as
  self-loops here. Updates of posts are ignored; ``identity`` events give a Profile only with a handle.

Stdlib only. Run from anywhere: ``python3 tests/reference/social_expected.py``.
"""

import json
import os
import re
import sys
from collections import Counter, OrderedDict
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("TAGFLOW_FIXTURES") or ROOT.parent / "shared" / "fixtures")
OUT = ROOT / "tests" / "expected" / "social"

KINDS = ["repost", "reply", "quote", "mention"]
# SOURCES.md names -> our kinds.
SOURCE_KINDS = {"reblog": "repost", "repost": "repost", "reply": "reply", "quote": "quote", "mention": "mention"}

BSKY_POST = "app.bsky.feed.post"
BSKY_REPOST = "app.bsky.feed.repost"


def fail(msg):
    sys.exit(f"social_expected.py: {msg}")


def sources_counts():
    """{fixture file or cassette pattern: {name: int}} from the SOURCES.md lines."""
    out = {}
    for line in (FIXTURES / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("- "):
            continue
        fields = [f.strip() for f in line[2:].split(" | ")]
        if len(fields) < 6:
            continue
        name = fields[0].split(" ")[0]
        counts = {}
        for item in fields[5].split():
            k, _, v = item.partition("=")
            if v.isdigit():
                counts[k] = int(v)
        out[name] = counts
    return out


def text(v):
    """A JSON string, or an integer id as its decimal text (ids are strings in both APIs)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return str(v)
    return v if isinstance(v, str) else None


def nonempty(v):
    v = text(v)
    return v if v else None


def unix(ts):
    if not isinstance(ts, str):
        return None
    try:
        return int(datetime.fromisoformat(ts.strip()).timestamp())
    except ValueError:
        return None


class Fixture:
    """The records decoded from one fixture and the graph they build."""

    def __init__(self, name, fixture, fmt):
        self.name, self.fixture, self.fmt = name, fixture, fmt
        self.records = Counter({k: 0 for k in ["post", "edit", "delete", "profile", "ignored", "error"]})
        self.totals = Counter({k: 0 for k in KINDS})
        self.candidates = Counter({k: 0 for k in KINDS})
        self.dropped = {k: Counter() for k in KINDS}
        self.counted = Counter()  # SOURCES.md-style counts (statuses, events, like, ...)
        self.users = OrderedDict()  # key -> {handle, name}
        self.posts = OrderedDict()  # id -> post
        self.deleted = []
        self.profiles = {}
        self.local_ids = {}  # Mastodon instance-local id -> uri, for the delete-translation check
        self.accounts = 0

    def see(self, key, handle=None, name=None):
        u = self.users.setdefault(key, {"handle": None, "name": None})
        if handle:
            u["handle"] = handle
        if name:
            u["name"] = name

    def apply(self, kind, post):
        self.records[kind] += 1
        for k, _ in post["edges"]:
            self.totals[k] += 1
        self.see(post["author"], *post["author_profile"])
        for key, (handle, name) in post["targets"].items():
            self.see(key, handle, name)
        if kind == "edit" or post["id"] not in self.posts:
            self.posts[post["id"]] = post

    def delete(self, post_id):
        self.records["delete"] += 1
        self.deleted.append(post_id)
        self.posts.pop(post_id, None)

    def new_post(self, post_id, author, handle, name, created_at):
        return {"id": post_id, "author": author, "author_profile": (handle, name), "created_at": created_at,
                "edges": [], "targets": OrderedDict(), "tags": [], "refs": []}

    def candidate(self, post, kind, target, handle=None, name=None, drop=None):
        """One candidate interaction of the payload; it becomes an edge unless a rule drops it."""
        self.candidates[kind] += 1
        if drop is None and target is None:
            drop = "unresolvable"
        if drop is None and target == post["author"]:
            drop = "self_loop"
        if drop is None and (kind, target) in post["edges"]:
            drop = "duplicate"
        if drop:
            self.dropped[kind][drop] += 1
            return
        post["edges"].append((kind, target))
        t = post["targets"].setdefault(target, [None, None])
        t[0] = handle or t[0]
        t[1] = name or t[1]

    def edges(self, posts=None):
        c = Counter()
        for p in (posts if posts is not None else self.posts).values():
            for kind, to in p["edges"]:
                c[(p["author"], to, kind)] += 1
        return c

    def reconcile(self, sources):
        if sources is None:
            fail(f"{self.fixture}: no SOURCES.md line")
        problems = []
        src_kinds = Counter()
        for name, n in sources.items():
            if name in SOURCE_KINDS:
                src_kinds[SOURCE_KINDS[name]] += n
            elif name == "resolvable_edges":
                if sum(self.candidates.values()) != n:
                    problems.append(f"resolvable_edges: {sum(self.candidates.values())} candidates vs {n}")
            elif self.counted[name] != n:
                problems.append(f"{name}: counted {self.counted[name]} vs {n}")
        for k in KINDS:
            if self.candidates[k] != src_kinds[k]:
                problems.append(f"{k}: {self.candidates[k]} candidates vs SOURCES.md {src_kinds[k]}")
            if self.totals[k] + sum(self.dropped[k].values()) != self.candidates[k]:
                problems.append(f"{k}: totals + dropped != candidates")
        if problems:
            fail(f"{self.fixture} disagrees with SOURCES.md: {'; '.join(problems)}")
        return {"sources": sources, "candidates": dict(self.candidates),
                "dropped": {k: dict(sorted(v.items())) for k, v in self.dropped.items()}}

    def dump(self, sources):
        reconcile = self.reconcile(sources)
        # Translating Mastodon's local delete ids (what the live source does) must not change the edges.
        translated = OrderedDict(self.posts)
        for d in self.deleted:
            translated.pop(self.local_ids.get(d, d), None)
        if self.edges(translated) != self.edges():
            fail(f"{self.fixture}: translated deletes would change the edges; the test needs the translation")
        out = OrderedDict()
        out["fixture"] = self.fixture
        out["format"] = self.fmt
        out["records"] = dict(self.records)
        out["accounts"] = self.accounts
        out["totals"] = dict(self.totals)
        out["reconcile"] = reconcile
        out["users"] = {k: self.users[k] for k in sorted(self.users)}
        out["edges"] = [[f, t, k, n] for (f, t, k), n in sorted(self.edges().items())]
        out["posts"] = {p["id"]: {"author": p["author"], "created_at": p["created_at"],
                                  "tags": sorted(p["tags"]), "refs": sorted(p["refs"])}
                        for p in sorted(self.posts.values(), key=lambda p: p["id"])}
        out["deleted"] = sorted(self.deleted)
        out["profiles"] = dict(sorted(self.profiles.items()))
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{self.name}.json"
        path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        edges = sum(n for *_, n in out["edges"])
        print(f"{self.name}: records={dict(self.records)} totals={dict(self.totals)} users={len(self.users)} "
              f"edges={edges} posts={len(self.posts)} dropped="
              f"{ {k: dict(v) for k, v in self.dropped.items() if v} }")


# ---------------------------------------------------------------------------------------------- Mastodon


def url_host(url):
    if not isinstance(url, str) or "://" not in url:
        return None
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return netloc.lower() or None


def qualify(acct, url, instance):
    acct = text(acct)
    if acct is None:
        return None
    acct = acct.strip()
    if acct.startswith("@"):
        acct = acct[1:]
    if "@" in acct:
        user, _, domain = acct.partition("@")
        if not user or not domain or "@" in domain:
            return None
        return f"{user}@{domain.lower()}"
    if not acct:
        return None
    if instance:
        domain = instance.lower()
    else:
        domain = url_host(url)
    return f"{acct}@{domain}" if domain else None


def m_user(account, instance):
    """(key, handle, name) of an Account or Mention, or None."""
    if not isinstance(account, dict):
        return None
    acct = qualify(account.get("acct"), account.get("url"), instance)
    if acct is None:
        return None
    return f"mastodon:{acct}", acct, nonempty(account.get("display_name"))


def m_status(fx, s, instance):
    """The post of one Status, or None (counted as an error) when it has no uri or usable account."""
    uri = nonempty(s.get("uri"))
    author = m_user(s.get("account"), instance)
    if uri is None or author is None:
        return None
    fx.counted["statuses"] += 1
    if nonempty(s.get("id")):
        fx.local_ids[text(s["id"])] = uri
    post = fx.new_post(uri, author[0], author[1], author[2], unix(s.get("created_at")))
    mentions = s.get("mentions") or []

    to_id = text(s.get("in_reply_to_account_id"))
    if to_id is not None:
        if to_id == text((s.get("account") or {}).get("id")):
            fx.candidate(post, "reply", author[0], drop="self_loop")
        else:
            match = next((m for m in mentions if text(m.get("id")) == to_id), None)
            target = m_user(match, instance) if match else None
            fx.candidate(post, "reply", *(target or (None,)))
    if nonempty(s.get("in_reply_to_id")):
        post["refs"].append(text(s["in_reply_to_id"]))

    for m in mentions:
        fx.candidate(post, "mention", *(m_user(m, instance) or (None,)))

    q = s.get("quote")
    if isinstance(q, dict):
        if "state" in q and q["state"] is not None:
            quoted = q.get("quoted_status") if q["state"] == "accepted" else None
            drop = None if q["state"] == "accepted" else "not_accepted"
        else:  # legacy: the quote field is the quoted Status itself
            quoted, drop = q, None
        if drop:
            fx.candidate(post, "quote", None, drop=drop)
        elif isinstance(quoted, dict) and isinstance(quoted.get("account"), dict):
            fx.candidate(post, "quote", *(m_user(quoted["account"], instance) or (None,)))
            if nonempty(quoted.get("uri")):
                post["refs"].append(quoted["uri"])
        else:
            fx.candidate(post, "quote", None, drop="not_visible")

    r = s.get("reblog")
    if isinstance(r, dict):
        fx.candidate(post, "repost", *(m_user(r.get("account"), instance) or (None,)))
        if nonempty(r.get("uri")):
            post["refs"].append(r["uri"])
        post["tags"] += [t.get("name") for t in r.get("tags") or []]
    post["tags"] += [t.get("name") for t in s.get("tags") or []]
    post["tags"] = sorted({t.lstrip("#").lower() for t in post["tags"] if isinstance(t, str)} - {""})
    post["refs"] = list(dict.fromkeys(post["refs"]))
    return post


def m_apply_status(fx, s, instance, kind="post"):
    post = m_status(fx, s, instance) if isinstance(s, dict) else None
    if post is None:
        fx.records["error"] += 1
    else:
        fx.apply(kind, post)


def m_event(fx, event, data, instance):
    if event in ("update", "status.update"):
        try:
            s = json.loads(data)
        except ValueError:
            fx.records["error"] += 1
            return
        m_apply_status(fx, s, instance, "post" if event == "update" else "edit")
    elif event == "delete":
        if data.strip():
            fx.delete(data.strip())
        else:
            fx.records["error"] += 1
    else:
        fx.records["ignored"] += 1


def sse_events(body):
    """(event, data) pairs of a text/event-stream body, per the WHATWG parsing rules."""
    lines = re.split(r"\r\n|\r|\n", body.decode("utf-8", errors="replace"))
    lines.pop()  # the last piece has no line ending: a partial line, never processed
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    events, event, data = [], "", []
    for line in lines:
        if line == "":
            if data:
                events.append((event or "message", "\n".join(data)))
            event, data = "", []
        elif line.startswith(":"):
            continue
        else:
            field, colon, value = line.partition(":")
            if colon and value.startswith(" "):
                value = value[1:]
            if field == "event":
                event = value
            elif field == "data":
                data.append(value)
    return events


def mastodon_api(groups, sources):
    for cassette, files in sorted(groups.items()):
        fx = Fixture(f"mastodon-api__{cassette}", f"mastodon/api/{cassette}__*.json", "mastodon-api")
        fallback = Fixture(fx.name, fx.fixture, fx.fmt)  # the same with the instance unknown
        for path in files:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc["request"]["method"].upper() == "DELETE" or doc["status"] != 200:
                continue
            uri = doc["request"]["uri"]
            body = doc["body"]
            for f, instance in ((fx, urlsplit(uri).netloc.lower()), (fallback, None)):
                if urlsplit(uri).path.endswith("/reblogged_by"):
                    for a in body:
                        u = m_user(a, instance)
                        if u:
                            f.accounts += 1
                            f.see(*u)
                    continue
                if isinstance(body, dict) and "ancestors" in body:
                    statuses = body["ancestors"] + body["descendants"]
                elif isinstance(body, dict) and "uri" in body and "account" in body:
                    statuses = [body]
                elif isinstance(body, list) and all(isinstance(s, dict) and "uri" in s for s in body):
                    statuses = body
                else:
                    statuses = []
                for s in statuses:
                    m_apply_status(f, s, instance)
        if (fx.users, fx.edges(), fx.records) != (fallback.users, fallback.edges(), fallback.records):
            fail(f"{cassette}: the request host and the account.url fallback disagree")
        fx.dump(sources.get(f"mastodon/api/{cassette}__*.json"))


def mastodon_sse(path, sources):
    fx = Fixture(f"mastodon__{path.stem}", f"mastodon/{path.name}", "mastodon-sse")
    for event, data in sse_events(path.read_bytes()):
        m_event(fx, event, data, None)
    fx.dump(sources.get(f"mastodon/{path.name}"))


def mastodon_ws(path, sources):
    fx = Fixture(f"mastodon__{path.stem}", f"mastodon/{path.name}", "mastodon-ws")
    for frame in json.loads(path.read_text(encoding="utf-8")):
        if not isinstance(frame.get("event"), str):
            fx.records["error"] += 1
        elif isinstance(frame.get("payload"), str):
            m_event(fx, frame["event"], frame["payload"], None)
        elif frame["event"] in ("update", "status.update", "delete"):
            fx.records["error"] += 1
        else:
            fx.records["ignored"] += 1
    fx.dump(sources.get(f"mastodon/{path.name}"))


# ----------------------------------------------------------------------------------------------- Bluesky


def did_of(uri):
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    authority = re.split(r"[/?#]", uri[5:])[0]
    return authority if authority.startswith("did:") and len(authority) > 4 else None


def collection_of(uri):
    if not isinstance(uri, str) or not uri.startswith("at://"):
        return None
    parts = re.split(r"[/?#]", uri[5:])
    return parts[1] if len(parts) > 1 and parts[1] else None


def bsky_key(did):
    return f"bsky:{did}" if did else None


def jetstream(path, sources):
    fx = Fixture(f"bluesky__{path.stem}", f"bluesky/{path.name}", "jetstream")
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        fx.counted["lines"] += 1
        try:
            e = json.loads(line)
        except ValueError:
            fx.records["error"] += 1
            continue
        if not isinstance(e.get("did"), str) or not isinstance(e.get("time_us"), int):
            fx.records["error"] += 1
            continue
        fx.counted["events"] += 1
        did, time_us, kind = e["did"], e["time_us"], e.get("kind")
        commit, identity = e.get("commit"), e.get("identity")
        if kind == "commit" and isinstance(commit, dict):
            op, coll, rkey = commit["operation"], commit["collection"], commit["rkey"]
            if op == "create" and coll == "app.bsky.feed.like":
                fx.counted["like"] += 1
            if op == "create" and coll == "app.bsky.graph.follow":
                fx.counted["follow"] += 1
            if coll not in (BSKY_POST, BSKY_REPOST):
                fx.records["ignored"] += 1
                continue
            uri = f"at://{did}/{coll}/{rkey}"
            if op == "delete":
                fx.delete(uri)
                continue
            if op != "create":
                fx.records["ignored"] += 1
                continue
            rec = commit.get("record")
            created = unix(rec.get("createdAt"))
            post = fx.new_post(uri, bsky_key(did), None, None, created if created is not None else time_us // 10**6)
            if coll == BSKY_REPOST:
                subject = (rec.get("subject") or {}).get("uri")
                if not subject:
                    fx.records["error"] += 1
                    continue
                fx.candidate(post, "repost", bsky_key(did_of(subject)))
                post["refs"].append(subject)
            else:
                fx.counted["posts"] += 1
                reply = rec.get("reply") or {}
                parent = (reply.get("parent") or {}).get("uri")
                root = (reply.get("root") or {}).get("uri")
                if parent:
                    fx.candidate(post, "reply", bsky_key(did_of(parent)))
                    post["refs"].append(parent)
                if root:
                    post["refs"].append(root)
                er = (rec.get("embed") or {}).get("record") or {}
                quoted = er.get("uri") or (er.get("record") or {}).get("uri")
                if quoted and collection_of(quoted) == BSKY_POST:
                    fx.candidate(post, "quote", bsky_key(did_of(quoted)))
                    post["refs"].append(quoted)
                tags = []
                for facet in rec.get("facets") or []:
                    for feat in facet.get("features") or []:
                        t = feat.get("$type")
                        if t == "app.bsky.richtext.facet#mention":
                            d = feat.get("did")
                            if isinstance(d, str) and d.startswith("did:"):
                                fx.candidate(post, "mention", bsky_key(d))
                        elif t == "app.bsky.richtext.facet#tag" and isinstance(feat.get("tag"), str):
                            tags.append(feat["tag"])
                tags += [t for t in rec.get("tags") or [] if isinstance(t, str)]
                post["tags"] = sorted({t.lstrip("#").lower() for t in tags} - {""})
            post["refs"] = list(dict.fromkeys(post["refs"]))
            fx.apply("post", post)
        elif kind == "identity" and isinstance(identity, dict) and identity.get("handle"):
            fx.records["profile"] += 1
            fx.profiles[bsky_key(did)] = identity["handle"]
        else:
            fx.records["ignored"] += 1
    # A profile update applies to known users only.
    for key, handle in fx.profiles.items():
        if key in fx.users:
            fx.users[key]["handle"] = handle
    fx.dump(sources.get(f"bluesky/{path.name}"))


def main():
    if not (FIXTURES / "SOURCES.md").is_file():
        fail(f"fixtures not found at {FIXTURES} (set TAGFLOW_FIXTURES)")
    sources = sources_counts()
    groups = {}
    for path in sorted((FIXTURES / "mastodon" / "api").glob("*.json")):
        cassette, _, n = path.stem.rpartition("__")
        groups.setdefault(cassette, []).append((int(n), path))
    groups = {c: [p for _, p in sorted(files)] for c, files in groups.items()}
    mastodon_api(groups, sources)
    for path in sorted((FIXTURES / "mastodon").glob("*.sse")):
        mastodon_sse(path, sources)
    mastodon_ws(FIXTURES / "mastodon" / "docs_websocket_examples.json", sources)
    for path in sorted((FIXTURES / "bluesky").glob("*.jsonl")):
        jetstream(path, sources)
    others = {p.name for p in (FIXTURES / "mastodon").iterdir() if p.is_file()} - {
        p.name for p in (FIXTURES / "mastodon").glob("*.sse")} - {"docs_websocket_examples.json"}
    others |= {p.name for p in (FIXTURES / "bluesky").iterdir()} - {
        p.name for p in (FIXTURES / "bluesky").glob("*.jsonl")} - {"jetstream__corpus_manifest.json"}
    if others:
        fail(f"fixtures this script does not replay: {sorted(others)}")


if __name__ == "__main__":
    main()
