"""Rebuild a provider schema from the package cdktf generated from it.

`@cdktf/provider-aws` ships no schema file, but its generated code carries the schema in a
regular form, which this module reads back:

- `lib/<type>/index.js` (and `index-structs/*.js`): per resource, `synthesizeHclAttributes()`
  lists every settable argument with its snake_case name, its kind (`simple`, `list`, `set`,
  `map`, `struct`) and element type, and names the function of each nested struct; each struct
  has the same `<struct>ToHclTerraform` function, and an `OutputReference` class whose getters
  read the computed-only attributes (`getStringAttribute('arn')`, `new XList(this, "x", isSet)`,
  each with a `// name - computed: .., optional: .., required: ..` line from the schema).
- `.jsii` (the type manifest): whether an argument is required (`optional` missing), whether a
  nested struct is a block (its docs summary is "<name> block."), and whether a list or set
  block is a single struct (`max_items = 1`).

What does not survive the generation, and so is not in the result: descriptions, `min_items`
other than 1 and `max_items` other than 1 on blocks, whether an optional argument is also
computed, the inner kind of nested collections (`list(list(string))` vs `list(set(string))`;
read as lists), the element type of the few computed attributes cdktf could not type (served
as `dynamic`). Attributes cdktf replaced by `any` (QuickSight `definition`, WAFv2 `statement`)
leave their resource types out entirely (`not_served`).
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra_check.schema import Attribute, Block, NestedBlock, ProviderSchema

_SEGMENT = re.compile(r"^(?:class (\w+) extends ([\w.]+) \{|function (\w+)\(struct\) \{)", re.M)
_ENTRY = re.compile(
    r'^\s+"?([A-Za-z0-9_]+)"?: \{\n'
    r"\s+value: (.+),\n"
    r"\s+isBlock: (?:true|false),\n"
    r'\s+type: "(\w+)",\n'
    r'\s+storageClassType: "(\w+)",\n',
    re.M,
)
_COMMENT = re.compile(
    r"^\s+// ([A-Za-z0-9_]+) - computed: (true|false), optional: (true|false), required: (true|false)$",
    re.M,
)
_GETTER = re.compile(r"^    get (\w+)\(\) \{\n\s+return (.+);\n    \}$", re.M)
_GETTER_READ = re.compile(r"^(.*?)\('([A-Za-z0-9_]+)'\)+$")
_STORED = re.compile(r'this\._\w+ = new ([\w.]+)\(this, "([A-Za-z0-9_]+)"(?:, (true|false))?\);')
_RTTI = re.compile(r'^(\w+)\[_\w+\] = \{ fqn: "([^"]+)"', re.M)
_RESOURCE_TYPE = re.compile(r"terraformResourceType: '([a-z0-9_]+)'")
_STRUCT_FUNCTION = re.compile(r"(?<!cdktf\.)\b([a-z]\w*)ToHclTerraform\b")
_VALUE_SOURCE = re.compile(r"\((?:this\._|struct\.)(\w+?)(?:\.internalValue)?\)$")

_PRIMITIVE = {"string": "string", "number": "number", "boolean": "bool"}
_GETTER_TYPES: dict[str, Any] = {
    "this.getStringAttribute": "string",
    "this.getNumberAttribute": "number",
    "this.getBooleanAttribute": "bool",
    "this.getListAttribute": ["list", "string"],
    "cdktf.Fn.tolist(this.getListAttribute": ["set", "string"],
    "this.getNumberListAttribute": ["list", "number"],
    "cdktf.Token.asNumberList(cdktf.Fn.tolist(this.getNumberListAttribute": ["set", "number"],
    "this.getStringMapAttribute": ["map", "string"],
    "this.getNumberMapAttribute": ["map", "number"],
    "this.getBooleanMapAttribute": ["map", "bool"],
    # cdktf's "not yet implemented" getters: the element type is not in the generated code.
    "this.interpolationForAttribute": "dynamic",
    "cdktf.Token.asAny(cdktf.Fn.tolist(this.interpolationForAttribute": "dynamic",
}
_STORED_MAPS = {
    "cdktf.StringMap": ["map", "string"],
    "cdktf.NumberMap": ["map", "number"],
    "cdktf.BooleanMap": ["map", "bool"],
    "cdktf.AnyMap": "dynamic",
}


class SourceError(Exception):
    """The generated code is not in a form this reader knows: never guessed around."""


class NotServed(Exception):
    """This type's schema is not carried in full by the generated code."""


@dataclass(frozen=True)
class _Flags:
    computed: bool
    optional: bool
    required: bool


@dataclass
class _Module:
    """One generated module: a resource, a data source or the provider, with its structs."""

    directory: str
    classes: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (base, text)
    functions: dict[str, str] = field(default_factory=dict)  # name -> text
    namespace: str = ""


def _split(text: str, module: _Module) -> None:
    starts = list(_SEGMENT.finditer(text))
    ends = [following.start() for following in starts[1:]] + [len(text)] if starts else []
    for match, end in zip(starts, ends, strict=True):
        segment = text[match.start() : end]
        if match.group(1):
            module.classes[match.group(1)] = (match.group(2), segment)
        else:
            module.functions[match.group(3)] = segment
    for name, fqn in _RTTI.findall(text):
        if name in module.classes and not module.namespace:
            module.namespace = fqn.rsplit(".", 1)[0]


def _comments(text: str) -> dict[str, _Flags]:
    return {
        name: _Flags(computed == "true", optional == "true", required == "true")
        for name, computed, optional, required in _COMMENT.findall(text)
    }


class _Reader:
    def __init__(self, jsii_types: dict[str, Any], module: _Module) -> None:
        self.jsii = jsii_types
        self.module = module
        self.stack: list[str] = []

    # -- jsii -----------------------------------------------------------------------------
    def _interface(self, fqn: str) -> dict[str, dict[str, Any]]:
        found = self.jsii.get(fqn)
        if found is None:
            raise SourceError(f"{self.module.directory}: no jsii type {fqn}")
        return {prop["name"]: prop for prop in found.get("properties", [])}

    def _struct_interface(self, struct: str) -> dict[str, dict[str, Any]]:
        return self._interface(f"{self.module.namespace}.{struct}")

    # -- generated JavaScript --------------------------------------------------------------
    def _entries(self, text: str) -> list[tuple[str, str, str, str]]:
        return [(n, v, t, s) for n, v, t, s in _ENTRY.findall(text)]

    def _struct_text(self, struct: str) -> tuple[str, str]:
        """The struct's `ToHclTerraform` function and its `OutputReference` class (if any)."""
        function = self.module.functions.get(struct[0].lower() + struct[1:] + "ToHclTerraform")
        if function is None:
            raise SourceError(f"{self.module.directory}: no HCL function for struct {struct}")
        reference = self.module.classes.get(struct + "OutputReference", ("", ""))[1]
        return function, reference

    @staticmethod
    def _struct_of(value: str) -> str:
        names = _STRUCT_FUNCTION.findall(value)
        if len(names) != 1:
            raise SourceError(f"cannot tell the struct of {value!r}")
        name: str = names[0]
        return name[0].upper() + name[1:]

    @staticmethod
    def _source_property(value: str) -> str:
        """The jsii property an entry reads: its storage name, renamed as cdktf renames
        properties that clash with jsii or its target languages."""
        match = _VALUE_SOURCE.search(value)
        if match is None:
            raise SourceError(f"cannot tell the property of {value!r}")
        name = match.group(1)
        if name in ("self", "build", "node", "system", "tfResourceType"):
            return name + "Attribute"
        if name == "equals":
            return "equalTo"
        if re.match(r"get[A-Z]+", name):
            return name.replace("get", "fetch", 1)
        return name

    # -- types -----------------------------------------------------------------------------
    def _object_type(self, struct: str) -> Any:
        """The cty object type of a struct that stands for an attribute (not a block)."""
        if struct in self.stack:
            raise NotServed(f"recursive attribute type {struct}")
        self.stack.append(struct)
        try:
            function, reference = self._struct_text(struct)
            members: dict[str, Any] = {}
            for name, value, kind, storage in self._entries(function):
                members[name] = self._entry_type(value, kind, storage)
            for name, member_type, _flags in self._computed_members(reference, set(members)):
                members[name] = member_type
            return ["object", members]
        finally:
            self.stack.pop()

    def _entry_type(self, value: str, kind: str, storage: str) -> Any:
        if kind == "simple":
            if storage == "any":
                raise NotServed("an attribute cdktf replaced by `any`")
            return _PRIMITIVE[storage]
        if storage in ("stringList", "numberList", "booleanList") and kind in ("list", "set"):
            return [kind, _PRIMITIVE[storage[: -len("List")]]]
        if storage in ("stringMap", "numberMap", "booleanMap") and kind == "map":
            return ["map", _PRIMITIVE[storage[: -len("Map")]]]
        nested = {
            "stringListList": ["list", "string"],
            "stringMapList": ["map", "string"],
            "stringMapMap": ["map", "string"],
        }
        if storage in nested and kind in ("list", "set", "map"):
            return [kind, nested[storage]]
        if kind in ("list", "set", "map"):
            return [kind, self._object_type(self._struct_of(value))]
        if kind == "struct":
            return self._object_type(self._struct_of(value))
        raise SourceError(f"unknown entry kind {kind}/{storage}")

    def _computed_members(self, text: str, known: set[str]) -> Iterator[tuple[str, Any, _Flags]]:
        """Attributes read by getters or stored classes that are not settable arguments."""
        comments = _comments(text)
        for _getter, body in _GETTER.findall(text):
            read = _GETTER_READ.match(body)
            if read is None or read.group(2) in known:
                continue
            prefix, name = read.group(1), read.group(2)
            if prefix not in _GETTER_TYPES:
                raise SourceError(f"{self.module.directory}: unknown getter {body!r}")
            flags = comments.get(name)
            if flags is None:
                raise SourceError(f"{self.module.directory}: getter for {name} without flags")
            known.add(name)
            yield name, _GETTER_TYPES[prefix], flags
        for class_name, name, is_set in _STORED.findall(text):
            if name in known:
                continue
            flags = comments.get(name)
            if flags is None:
                raise SourceError(f"{self.module.directory}: stored {name} without flags")
            known.add(name)
            if class_name in _STORED_MAPS:
                yield name, _STORED_MAPS[class_name], flags
            elif class_name.endswith("OutputReference"):
                yield name, self._object_type(class_name[: -len("OutputReference")]), flags
            elif class_name.endswith("List") and is_set:
                kind = "set" if is_set == "true" else "list"
                yield name, [kind, self._object_type(class_name[: -len("List")])], flags
            elif class_name.endswith("Map"):
                yield name, ["map", self._object_type(class_name[: -len("Map")])], flags
            else:
                raise SourceError(f"{self.module.directory}: unknown stored class {class_name}")

    # -- blocks ----------------------------------------------------------------------------
    def block(self, hcl_text: str, class_text: str, interface: dict[str, dict[str, Any]]) -> Block:
        """A block from its settable entries, its getters and its jsii interface."""
        attributes: dict[str, Attribute] = {}
        blocks: dict[str, NestedBlock] = {}
        comments = _comments(class_text)
        for name, value, kind, storage in self._entries(hcl_text):
            prop = interface.get(self._source_property(value))
            if prop is None:
                raise SourceError(f"{self.module.directory}: {name} is not in the jsii interface")
            required = not prop.get("optional", False)
            if storage == "any":
                raise NotServed(f"{name}: cdktf replaced its schema by `any`")
            if prop["docs"].get("summary") == f"{name} block.":
                blocks[name] = self._nested_block(name, value, kind, prop, required)
                continue
            flags = comments.get(name)
            attributes[name] = Attribute(
                type=self._entry_type(value, kind, storage),
                required=required,
                optional=not required,
                computed=bool(flags and flags.computed and not required),
            )
        for name, member_type, read in self._computed_members(class_text, set(attributes) | set(blocks)):
            # Neither computed, optional nor required: a block none of whose attributes can be
            # set, which cdktf keeps out of the arguments. Nothing can be written in it: computed.
            settable = read.optional or read.required
            attributes[name] = Attribute(
                type=member_type,
                required=read.required,
                optional=read.optional and not read.required,
                computed=(read.computed or not settable) and not read.required,
            )
        return Block(attributes=attributes, block_types=blocks)

    def _nested_block(
        self, name: str, value: str, kind: str, prop: dict[str, Any], required: bool
    ) -> NestedBlock:
        struct = self._struct_of(value)
        if struct in self.stack:
            raise NotServed(f"recursive block {struct}")
        self.stack.append(struct)
        try:
            function, reference = self._struct_text(struct)
            inner = self.block(function, reference, self._struct_interface(struct))
        finally:
            self.stack.pop()
        single_item = "collection" not in json.dumps(prop["type"])
        if kind == "struct":
            return NestedBlock(nesting_mode="single", block=inner)
        if kind not in ("list", "set"):
            raise SourceError(f"{self.module.directory}: block {name} of kind {kind}")
        return NestedBlock(
            nesting_mode=kind,
            block=inner,
            min_items=1 if required else 0,
            max_items=1 if single_item else 0,
        )


@dataclass
class _Result:
    kind: str  # "resource", "data", "provider"
    type_name: str
    block: Block | None
    not_served: str = ""


def _read_module(jsii_types: dict[str, Any], module: _Module) -> _Result | None:
    roots = [
        (name, base, text)
        for name, (base, text) in module.classes.items()
        if base in ("cdktf.TerraformResource", "cdktf.TerraformDataSource", "cdktf.TerraformProvider")
    ]
    if not roots:
        return None
    if len(roots) != 1:
        raise SourceError(f"{module.directory}: {len(roots)} resource classes")
    class_name, base, text = roots[0]
    kind = {"cdktf.TerraformResource": "resource", "cdktf.TerraformDataSource": "data"}.get(base, "provider")
    type_match = _RESOURCE_TYPE.search(text)
    type_name = type_match.group(1) if type_match else "aws"
    if kind != "provider" and type_match is None:
        raise SourceError(f"{module.directory}: no resource type")
    reader = _Reader(jsii_types, module)
    owner = jsii_types.get(f"{module.namespace}.{class_name}")
    if owner is None:
        raise SourceError(f"{module.directory}: no jsii class {class_name}")
    params = owner.get("initializer", {}).get("parameters", [])
    config = [p for p in params if p["name"] == "config"]
    if len(config) != 1:
        raise SourceError(f"{module.directory}: no config parameter")
    interface = reader._interface(config[0]["type"]["fqn"])
    hcl = text[text.index("synthesizeHclAttributes() {") :]
    try:
        block = reader.block(hcl, text, interface)
    except NotServed as reason:
        return _Result(kind, type_name, None, str(reason))
    if kind == "provider":
        # cdktf adds `alias` to the provider's arguments; it is a meta-argument, not the schema's.
        block = Block(
            attributes={k: v for k, v in block.attributes.items() if k != "alias"},
            block_types=block.block_types,
        )
    return _Result(kind, type_name, block)


def _modules(tar: tarfile.TarFile) -> Iterator[_Module]:
    texts: dict[str, list[str]] = {}
    for member in tar.getmembers():
        parts = member.name.split("/")
        if len(parts) >= 4 and parts[:2] == ["package", "lib"] and member.name.endswith(".js"):
            handle = tar.extractfile(member)
            if handle is not None:
                texts.setdefault(parts[2], []).append(handle.read().decode())
    for directory, chunks in sorted(texts.items()):
        module = _Module(directory)
        for chunk in chunks:
            _split(chunk, module)
        yield module


def read_package(tarball: Path, expected_provider_version: str) -> ProviderSchema:
    """The provider schema carried by a `@cdktf/provider-*` npm tarball."""
    with tarfile.open(tarball, "r:gz") as tar:
        manifest = tar.extractfile("package/package.json")
        jsii_file = tar.extractfile("package/.jsii")
        if manifest is None or jsii_file is None:
            raise SourceError("not a cdktf provider package")
        package = json.load(manifest)
        provider = package["cdktf"]["provider"]
        if provider["version"] != expected_provider_version:
            raise SourceError(
                f"{package['name']}@{package['version']} is generated from provider "
                f"{provider['version']}, not {expected_provider_version}"
            )
        jsii_types: dict[str, Any] = json.load(jsii_file)["types"]
        results = [r for m in _modules(tar) if (r := _read_module(jsii_types, m)) is not None]
    providers = [r.block for r in results if r.kind == "provider" and r.block is not None]
    if len(providers) != 1:
        raise SourceError(f"{len(providers)} provider schemas")
    return ProviderSchema(
        provider_source=provider["name"],
        provider_version=provider["version"],
        derived_from=f"{package['name']}@{package['version']}",
        provider=providers[0],
        resource_schemas={
            r.type_name: r.block for r in results if r.kind == "resource" and r.block is not None
        },
        data_source_schemas={
            r.type_name: r.block for r in results if r.kind == "data" and r.block is not None
        },
        not_served={
            ("data." if r.kind == "data" else "") + r.type_name: r.not_served
            for r in results
            if r.block is None
        },
    )
