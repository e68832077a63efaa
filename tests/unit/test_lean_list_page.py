"""The lean listing's page reader: its scanner must read every ListObjectsV2 page exactly as the
ElementTree reader it stands in for, and leave to that reader whatever it does not read exactly.

Pages are generated with every liberty XML and the stores take: fields in any order, present or
not, empty or self-closing, given twice; texts escaped by entities, decimal and hexadecimal
references or CDATA; whitespace between elements; keys URL-encoded or not; the S3 namespace or
none. Some are not what the scanner reads (comments, attributes, CDATA, unknown entities, control
characters, elements nested deeper, malformed XML): the reader's answer (or its exception) must
still be the tree reader's. Pages within what the scanner reads must be read by it, not left to
the tree reader. Pages captured from SeaweedFS and moto are read as they came.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replicator import lean_s3
from replicator.lean_s3 import _list_page, _list_page_tree, _scan_page

S3_NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Key characters: ASCII, the ones XML and URL encoding treat specially, and beyond one UTF-8 byte.
KEY_CHARS = (
    list("abcxyz019/-._ ")
    + list("&<>\"'+%=?#;")
    + ["\t", "\n", "é", "ü", "中", "😀", "\u2028", "\x85", "\ufffd"]
)
NAMES = [
    "Name",
    "Prefix",
    "KeyCount",
    "MaxKeys",
    "Delimiter",
    "StartAfter",
    "ContinuationToken",
    "Extra.Field-1",
]
WS = ["", "", "", " ", "\n", "\n  ", "\t", " \n\t "]
ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


def outcome(read: Callable[[bytes, str], dict[str, Any]], data: bytes) -> Any:
    try:
        return read(data, "SeaweedFS 8000GB 4.48")
    except Exception as exc:  # the tree reader's exceptions are part of its answer
        return type(exc)


def assert_reads_as_tree(data: bytes) -> None:
    assert outcome(_list_page, data) == outcome(_list_page_tree, data)


def assert_scanned_as_tree(data: bytes) -> None:
    """Read first with no pattern kept from earlier pages, then with the one this page left."""
    lean_s3._SHAPES.clear()
    expected = _list_page_tree(data, "s")
    assert _scan_page(data, "s") == expected
    assert _scan_page(data, "s") == expected


@dataclass(frozen=True)
class Style:
    """How a generated page is written."""

    encoded: bool  # EncodingType url: keys and prefixes URL-encoded
    wild: bool  # Sizes int() refuses, elements nested deeper, an entry without a Key
    cdata: bool  # texts partly in CDATA sections
    ws: str  # between elements
    uniform: bool  # every entry written the same way (as a store does), or each its own way
    empty: str  # how an empty element is written on a uniform page


@st.composite
def escaped(draw: st.DrawFn, text: str, style: Style) -> str:
    """`text` as XML character data, each run of it escaped its own way."""
    out = []
    at = 0
    while at < len(text):
        run = text[at : at + draw(st.integers(1, max(12, len(text) // 6)))]
        at += len(run)
        way = draw(st.sampled_from(["plain", "plain", "named", "decimal", "hex"] + ["cdata"] * style.cdata))
        if way == "cdata" and "]]>" not in run:
            out.append(f"<![CDATA[{run}]]>")
        elif way == "decimal":
            out.append("".join(f"&#{ord(char)};" for char in run))
        elif way == "hex":
            form = draw(st.sampled_from(["x", "X", "04x"]))
            out.append("".join(f"&#x{ord(char):{form}};" for char in run))
        else:
            special = "&<>\"'" if way == "named" else "&<"
            out.append("".join(ENTITIES[char] if char in special else char for char in run))
    return "".join(out)


@st.composite
def leaf(draw: st.DrawFn, name: str, text: str, style: Style) -> str:
    """An element holding `text` (escaped), or nothing."""
    body = draw(escaped(text, style))
    if not body:
        empty = style.empty if style.uniform else draw(st.sampled_from(["<{0}></{0}>", "<{0}/>", "<{0} />"]))
        return empty.format(name)
    return f"<{name}>{body}</{name}>"


@st.composite
def key_text(draw: st.DrawFn, encoded: bool) -> str:
    key = draw(st.text(st.sampled_from(KEY_CHARS), min_size=0, max_size=30))
    if draw(st.integers(0, 20)) == 0:
        key = "long/" + "n" * draw(st.integers(200, 1000)) + key
    if encoded:
        # Stores encode a space as "%20" (AWS) or "+" (SeaweedFS); some leave "+" as it is.
        key = draw(st.sampled_from([quote(key, safe="/"), quote_plus(key, safe="/"), key]))
    return key


# A Contents' children in the order AWS writes them; a page's store keeps one order of its own.
FIELDS = (
    "Key",
    "LastModified",
    "ETag",
    "ChecksumAlgorithm",
    "ChecksumType",
    "Size",
    "Owner",
    "StorageClass",
    "RestoreStatus",
)
ODD_SIZES = ["", "007", " 12 ", "+5", "-1", "&#49;2", "1_0", "x", "\u0661\u0662", "9" * 5000]


@st.composite
def field(draw: st.DrawFn, name: str, style: Style) -> str:
    ws = style.ws
    if name == "Key":
        return str(draw(leaf("Key", draw(key_text(style.encoded)), style)))
    if name == "ETag":
        digest = hashlib.md5(str(draw(st.integers())).encode()).hexdigest()
        etag = draw(
            st.sampled_from(
                [
                    f"&quot;{digest}&quot;",
                    f"&#34;{digest}&#34;",
                    f'"{digest}"',
                    f"&#x22;{digest}&#x22;",
                    f"&quot;{digest}&#34;",
                    f"&quot;{digest}-12&quot;",
                    digest,
                    "&quot;&quot;",
                    "",
                ]
            )
        )
        return (
            draw(st.sampled_from([f"<ETag>{etag}</ETag>", "<ETag/>"])) if not etag else f"<ETag>{etag}</ETag>"
        )
    if name == "Size":
        size = str(draw(st.integers(0, 10**13)))
        if style.wild and not draw(st.integers(0, 15)):
            size = draw(st.sampled_from(ODD_SIZES))
        return str(draw(leaf("Size", size, style))) if size else "<Size></Size>"
    if name == "LastModified":
        when = ["2026-01-02T03:04:05.123Z", "2026-11-21T19:51:51Z", "2025-03-04T05:06:07+00:00", ""]
        return str(draw(leaf("LastModified", draw(st.sampled_from(when)), style)))
    if name == "StorageClass":
        kind = draw(st.sampled_from(["STANDARD", "STANDARD", "GLACIER", "DEEP_ARCHIVE", "", " "]))
        return str(draw(leaf("StorageClass", kind, style)))
    if name == "RestoreStatus":
        children = [
            draw(leaf("IsRestoreInProgress", draw(st.sampled_from(["true", "false", "TRUE", ""])), style)),
            "<RestoreExpiryDate>2026-02-01T00:00:00.000Z</RestoreExpiryDate>",
        ]
        inner = ws.join(draw(st.permutations(children))[: draw(st.integers(0, 2))])
        if style.uniform:
            return f"<RestoreStatus>{inner}</RestoreStatus>"
        return draw(st.sampled_from([f"<RestoreStatus>{inner}</RestoreStatus>", "<RestoreStatus/>"]))
    if name == "Owner":
        owner = ws.join(
            [
                draw(leaf("ID", "75aa57f09aa0c8caeab4f8c24e99d10f", style)),
                draw(leaf("DisplayName", "w & f", style)),
            ]
        )
        if style.uniform:
            return f"<Owner>{ws}{owner}{ws}</Owner>"
        return draw(st.sampled_from([f"<Owner>{owner}</Owner>"] * 3 + ["<Owner/>", "<Owner></Owner>"]))
    value = {"ChecksumAlgorithm": "CRC64NVME", "ChecksumType": "FULL_OBJECT"}[name]
    return str(draw(leaf(name, value, style)))


@st.composite
def contents(draw: st.DrawFn, layout: list[str], frequency: dict[str, str], style: Style) -> str:
    fields = [
        draw(field(name, style))
        for name in layout
        if frequency[name] == "always" or (frequency[name] == "sometimes" and draw(st.booleans()))
    ]
    if not style.uniform and not draw(st.integers(0, 7)):  # an entry unlike the others
        odd = draw(st.sampled_from(["reordered", "twice"] + ["deep", "keyless"] * style.wild))
        if odd == "reordered":
            fields = draw(st.permutations(fields))
        elif odd == "twice" and fields:
            fields.insert(draw(st.integers(0, len(fields))), draw(st.sampled_from(fields)))
        elif odd == "deep":
            fields.append(
                draw(st.sampled_from(["<Deep><Deeper><Deepest/></Deeper></Deep>", "<Mixed>a<b/>c</Mixed>"]))
            )
        elif odd == "keyless":
            fields = [f for f in fields if not f.startswith("<Key")]
    ws = style.ws
    return f"<Contents>{ws}{ws.join(fields)}{ws}</Contents>"


# Changes to a well-formed page: most make it one the scanner leaves to the tree reader, some
# one no XML parser takes.
HOSTILE: list[Callable[[str], str]] = [
    lambda page: page.replace("<Key>", "<!-- a comment --><Key>", 1),
    lambda page: page.replace("<Size>", '<Size unit="bytes">', 1),
    lambda page: page.replace("<Key>", "<?pi here?><Key>", 1),
    lambda page: page.replace("<Key>", "<s3:Key>", 1).replace("</Key>", "</s3:Key>", 1),
    lambda page: page.replace("</Key>", "&nbsp;</Key>", 1),
    lambda page: page.replace("</Key>", "&#0;</Key>", 1),
    lambda page: page.replace("</Key>", "&#xD800;</Key>", 1),
    lambda page: page.replace("</Key>", "&#128512;&#x1F600;</Key>", 1),
    lambda page: page.replace("</Key>", "&#00034;</Key>", 1),
    lambda page: page.replace("</Key>", "a & b</Key>", 1),
    lambda page: page.replace("</Key>", "\x01</Key>", 1),
    lambda page: page.replace("</LastModified>", "\x1f</LastModified>", 1),
    lambda page: page.replace("</IsTruncated>", "\x0c</IsTruncated>", 1),
    lambda page: page.replace("</DisplayName>", "\x00</DisplayName>", 1),
    lambda page: page.replace("</Key>", "\r\n</Key>", 1),
    lambda page: page.replace("</Key>", "]]></Key>", 1),
    lambda page: page.replace("</Key>", "\ufffe</Key>", 1),
    lambda page: page.replace("</Key>", "<![CDATA[x<y]]></Key>", 1),
    lambda page: page.replace("</Owner>", "&#1;</Owner>", 1),
    lambda page: page.replace("</ID>", "&bogus;</ID>", 1),
    lambda page: page.replace("</ID>", "&#xFFFE;</ID>", 1),
    lambda page: page.replace("</ID>", "&#65533;&#x0041;</ID>", 1),
    lambda page: page.replace("</ChecksumAlgorithm>", "&#x1F600;</ChecksumAlgorithm>", 1),
    lambda page: page.replace("</Key>", "</Key><Key>again</Key>", 1),
    lambda page: page.replace("</Contents>", "</Content>", 1),
    lambda page: page.replace("<Contents>", "<Contents/><Contents>", 1),
    lambda page: page.replace("<Contents>", "<Contents >", 1),
    lambda page: page.replace("</ListBucketResult>", "</ListBucketResult><!-- after -->"),
    lambda page: page.replace("</ListBucketResult>", ""),
    lambda page: page.replace("<Name>", "<Name><Contents><Key>nested</Key></Contents>", 1),
    lambda page: page.replace("<Name>", "<CommonPrefixes/><Name>", 1),
    lambda page: page.replace("ListBucketResult", "Error"),
    lambda page: page.replace(S3_NS, ' xmlns="http://example.com/other/"'),
    lambda page: page.replace(S3_NS, S3_NS.replace('"', "'")),
    lambda page: "\ufeff" + page,
    lambda page: page.replace(
        '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0" encoding="ISO-8859-1"?>'
    ),
    lambda page: page.replace('<?xml version="1.0" encoding="UTF-8"?>', "<!DOCTYPE x [<!ENTITY e 'v'>]>"),
    lambda page: page[: len(page) // 2],
]


@st.composite
def pages(draw: st.DrawFn, wild: bool) -> bytes:
    style = Style(
        encoded=draw(st.booleans()),
        wild=wild,
        cdata=wild and not draw(st.integers(0, 7)),
        ws=draw(st.sampled_from(WS)),
        uniform=draw(st.booleans()),
        empty=draw(st.sampled_from(["<{0}></{0}>"] * 4 + ["<{0}/>", "<{0} />"])),
    )
    layout = draw(st.permutations(FIELDS))
    frequency = {name: draw(st.sampled_from(["always", "always", "sometimes", "never"])) for name in FIELDS}
    frequency["Key"] = "always"
    items = [draw(contents(layout, frequency, style)) for _ in range(draw(st.integers(0, 6)))]
    for _ in range(draw(st.integers(0, 3))):
        folder = draw(key_text(style.encoded)) + "/"
        prefixes = [draw(leaf("Prefix", folder, style))] * draw(st.integers(0 if wild else 1, 2))
        items.append(f"<CommonPrefixes>{style.ws}{style.ws.join(prefixes)}{style.ws}</CommonPrefixes>")
    names = draw(st.lists(st.sampled_from(NAMES), max_size=5))
    items += [draw(leaf(name, draw(key_text(False)), style)) for name in names]
    if style.encoded or draw(st.booleans()):
        items.append(draw(leaf("EncodingType", draw(st.sampled_from(["url"] * 4 + ["URL", ""])), style)))
    items.append(draw(leaf("IsTruncated", draw(st.sampled_from(["true", "false", "True"])), style)))
    if draw(st.booleans()):
        items.append(draw(leaf("NextContinuationToken", draw(key_text(False)), style)))
    if draw(st.booleans()):  # the root's fields before the entries, after them, or among them
        items = draw(st.permutations(items))
    namespace = draw(st.sampled_from([S3_NS, ""]))
    declaration = draw(
        st.sampled_from(
            [
                '<?xml version="1.0" encoding="UTF-8"?>\n',
                '<?xml version="1.0" encoding="utf-8"?>',
                "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>\n",
                '<?xml version="1.0"?>',
                "",
            ]
        )
    )
    ws = style.ws
    page = f"{declaration}<ListBucketResult{namespace}>{ws}{ws.join(items)}{ws}</ListBucketResult>{ws}"
    if wild and not draw(st.integers(0, 3)):
        page = draw(st.sampled_from(HOSTILE))(page)
    return page.encode()


@PROPERTY
@given(pages(wild=True))
def test_any_page_reads_as_the_tree_reader_reads_it(data: bytes) -> None:
    lean_s3._SHAPES.clear()
    assert_reads_as_tree(data)
    assert_reads_as_tree(data)


@PROPERTY
@given(pages(wild=False))
def test_pages_within_the_scanners_subset_are_read_by_it(data: bytes) -> None:
    """No comments, CDATA, control characters, unknown entities or elements nested deeper: the
    scanner reads the page itself."""
    assert_scanned_as_tree(data)


def test_an_archived_object_listed_on_aws() -> None:
    page = (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult{S3_NS}><Name>b</Name>'
        "<Contents><Key>a%20b+c%2B</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
        "<ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>7</Size>"
        "<StorageClass>GLACIER</StorageClass><RestoreStatus><IsRestoreInProgress>true</IsRestoreInProgress>"
        "</RestoreStatus></Contents><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>"
        "</ListBucketResult>"
    ).encode()
    assert _scan_page(page, "s")["Contents"] == [
        {
            "ETag": '"0123456789abcdef0123456789abcdef"',
            "Key": "a b c+",
            "Size": 7,
            "LastModified": "2026-01-02T03:04:05.000Z",
            "StorageClass": "GLACIER",
            "RestoreStatus": {"IsRestoreInProgress": True},
        }
    ]
    assert_reads_as_tree(page)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("<ETag/>", {"ETag": ""}),
        ("<Size/>", {"Size": 0}),
        ("<LastModified />", {"LastModified": None}),
        ("<ETag></ETag>", {"ETag": ""}),
        ("<StorageClass/>", {}),
        ("<StorageClass></StorageClass>", {}),
        ("<LastModified></LastModified>", {"LastModified": None}),
        ("<RestoreStatus/>", {"RestoreStatus": {"IsRestoreInProgress": False}}),
        ("<ETag>&#34;ab&#34;</ETag><ETag>x&amp;y</ETag>", {"ETag": "x&y"}),
        ("<StorageClass>GLACIER</StorageClass><StorageClass/>", {"StorageClass": "GLACIER"}),
        ("<Size>12</Size><Size></Size>", {"Size": 0}),
        ("<Size>12</Size><Size/>", {"Size": 0}),
    ],
)
def test_empty_and_repeated_fields_read_as_the_tree_reader_reads_them(
    field: str, expected: dict[str, Any]
) -> None:
    page = f"<ListBucketResult{S3_NS}><Contents><Key>k</Key>{field}</Contents></ListBucketResult>".encode()
    entry = _list_page(page, "")["Contents"][0]
    assert {name: entry[name] for name in expected} == expected
    assert_reads_as_tree(page)


# Captured from SeaweedFS 4.48 (`weed mini`) and moto's server listing the same keys (a space, "+",
# "&", "<", ">", quotes, "%", a tab, characters beyond ASCII): SeaweedFS's second page of two
# keys, whose continuation token holds references, and moto's page listed with a delimiter.
SEAWEEDFS_PAGE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006'
    b'-03-01/"><Name>cap-src</Name><Prefix></Prefix><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated'
    b"><Contents><Key>%2541</Key><ETag>&#34;f561aaf6ef0bf14d4208bb46a4ccb3ad&#34;</ETag><Size>3</Size>"
    b"<StorageClass>STANDARD</StorageClass><LastModified>2026-11-21T19:51:51Z</LastModified></Contents"
    b"><Contents><Key>a+b%2Bc%26d%3Ce%3E%22q%27</Key><ETag>&#34;df7c0a3fa59809752be392c52c4a0559&#34;<"
    b"/ETag><Size>13</Size><StorageClass>STANDARD</StorageClass><LastModified>2026-11-21T19:51:50Z</La"
    b"stModified></Contents><NextContinuationToken>a b+c&amp;d&lt;e&gt;&#34;q&#39;</NextContinuationTo"
    b"ken><EncodingType>url</EncodingType><KeyCount>2</KeyCount></ListBucketResult>"
)
MOTO_PAGE = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006'
    b'-03-01/"><IsTruncated>false</IsTruncated><Contents><Key>%2541</Key><LastModified>2026-11-21T19:5'
    b'1:53.000Z</LastModified><ETag>"f561aaf6ef0bf14d4208bb46a4ccb3ad"</ETag><ChecksumAlgorithm>CRC32<'
    b"/ChecksumAlgorithm><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>"
    b'a%20b%2Bc%26d%3Ce%3E%22q%27</Key><LastModified>2026-11-21T19:51:53.000Z</LastModified><ETag>"df7'
    b'c0a3fa59809752be392c52c4a0559"</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>13</Size>'
    b"<StorageClass>STANDARD</StorageClass></Contents><Contents><Key>glacier</Key><LastModified>2026-1"
    b'1-21T19:51:53.000Z</LastModified><ETag>"b2f5ff47436671b6e533d8dc3614845d"</ETag><ChecksumAlgorit'
    b"hm>CRC32</ChecksumAlgorithm><Size>1</Size><StorageClass>GLACIER</StorageClass></Contents><Conten"
    b'ts><Key>t%09ab</Key><LastModified>2026-11-21T19:51:53.000Z</LastModified><ETag>"ea416ed0759d46a8'
    b'de58f63a59077499"</ETag><ChecksumAlgorithm>CRC32</ChecksumAlgorithm><Size>4</Size><StorageClass>'
    b"STANDARD</StorageClass></Contents><Name>cap-src</Name><Prefix/><Delimiter>/</Delimiter><MaxKeys>"
    b"1000</MaxKeys><CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>images"
    b"/</Prefix></CommonPrefixes><CommonPrefixes><Prefix>z%C3%BC/</Prefix></CommonPrefixes><EncodingTy"
    b"pe>url</EncodingType><KeyCount>7</KeyCount></ListBucketResult>"
)


def test_a_seaweedfs_page() -> None:
    page = _scan_page(SEAWEEDFS_PAGE, "SeaweedFS 8000GB 4.48")
    assert page == _list_page_tree(SEAWEEDFS_PAGE, "SeaweedFS 8000GB 4.48")
    assert [e["Key"] for e in page["Contents"]] == ["%41", "a b+c&d<e>\"q'"]
    assert page["Contents"][0]["ETag"] == '"f561aaf6ef0bf14d4208bb46a4ccb3ad"'
    assert page["NextContinuationToken"] == "a b+c&d<e>\"q'"
    assert page["IsTruncated"] is True


def test_a_moto_page() -> None:
    page = _scan_page(MOTO_PAGE, "amazon.com")
    assert page == _list_page_tree(MOTO_PAGE, "amazon.com")
    assert [e["Key"] for e in page["Contents"]] == ["%41", "a b+c&d<e>\"q'", "glacier", "t\tab"]
    assert [e["StorageClass"] for e in page["Contents"]] == ["STANDARD", "STANDARD", "GLACIER", "STANDARD"]
    assert page["CommonPrefixes"] == [{"Prefix": "d/"}, {"Prefix": "images/"}, {"Prefix": "zü/"}]


def aws_entry(key: str, checksum: bool) -> str:
    return (
        f"<Contents><Key>{key}</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
        "<ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag>"
        + ("<ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>" if checksum else "")
        + "<Size>7</Size><StorageClass>STANDARD</StorageClass></Contents>"
    )


def test_a_field_only_later_entries_have_widens_the_fixed_order_pattern() -> None:
    """AWS lists a ChecksumAlgorithm for newer objects only: the pattern made from the first
    entry takes it in its place, for this page and the next ones."""
    entries = "".join(aws_entry(f"k{i}", checksum=i % 3 == 1) for i in range(9))
    page = f"<ListBucketResult{S3_NS}>{entries}<IsTruncated>false</IsTruncated></ListBucketResult>".encode()
    assert _scan_page(page, "") == _list_page_tree(page, "")
    shape = lean_s3._page_shape(page.decode())[1]
    assert shape is not None and shape.whole
    assert [name for name, _ in shape.layout] == [
        "Key",
        "LastModified",
        "ETag",
        "ChecksumAlgorithm",
        "Size",
        "StorageClass",
    ]


def test_entries_in_another_order_are_read_by_the_pattern_of_any_order() -> None:
    first = "<Contents><Key>a</Key><Size>1</Size></Contents>"
    other = "<Contents><Size>2</Size><Key>b</Key><Unknown>u</Unknown></Contents>"
    page = f"<ListBucketResult>{first}{other}<IsTruncated>false</IsTruncated></ListBucketResult>".encode()
    expected = [{"ETag": "", "Key": "a", "Size": 1}, {"ETag": "", "Key": "b", "Size": 2}]
    assert _scan_page(page, "")["Contents"] == expected
    assert lean_s3._page_shape(page.decode())[1] is None  # the next such page goes there at once
    assert _scan_page(page, "")["Contents"] == expected


def test_a_page_with_whitespace_between_elements_is_read_by_the_fixed_order_pattern() -> None:
    entries = "".join(
        f"\n  <Contents>\n    <Key>k{i}</Key>\n    <Size>{i}</Size>\n  </Contents>" for i in range(3)
    )
    page = f"<ListBucketResult>{entries}\n  <IsTruncated>false</IsTruncated>\n</ListBucketResult>\n".encode()
    assert _scan_page(page, "") == _list_page_tree(page, "")
    shape = lean_s3._page_shape(page.decode())[1]
    assert shape is not None and shape.spaced


def test_malformed_pages_raise_what_the_tree_reader_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    fallbacks: list[bytes] = []
    tree = lean_s3._list_page_tree

    def counted(data: bytes, server: str) -> dict[str, Any]:
        fallbacks.append(data)
        return tree(data, server)

    monkeypatch.setattr(lean_s3, "_list_page_tree", counted)
    for bad in (
        b"<ListBucketResult><Contents><Key>a</Contents>",
        b"<ListBucketResult>&x;</ListBucketResult>",
        b"",
    ):
        with pytest.raises(ET.ParseError):
            _list_page(bad, "")
    with pytest.raises(ValueError, match="invalid literal"):
        _list_page(
            b"<ListBucketResult><Contents><Key>a</Key><Size>x</Size></Contents></ListBucketResult>", ""
        )
    assert len(fallbacks) == 4
