//! Struct layouts from a binary's DWARF (gimli), when it has any: the check of gprof's
//! per-release table on every unstripped binary, and the source of the layout of a release
//! newer than the table.

use std::borrow::Cow;
use std::collections::HashMap;

use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{Object, ObjectSection};

use super::BinaryError;

/// One struct member: name, byte offset, and the global offset of its type's DIE.
#[derive(Clone, Debug)]
struct Member {
    name: String,
    offset: u64,
    ty: Option<usize>,
}

/// The struct types of a binary, by name and by DIE offset.
#[derive(Debug, Default)]
pub struct Types {
    by_name: HashMap<String, usize>,
    structs: HashMap<usize, Vec<Member>>,
    /// typedef DIE -> the type it names.
    typedefs: HashMap<usize, usize>,
}

fn err(e: impl std::fmt::Display) -> BinaryError {
    BinaryError::Dwarf(e.to_string())
}

impl Types {
    /// Reads the struct types; None when the binary has no DWARF.
    pub fn read(
        file: &object::read::elf::ElfFile64<'_, object::Endianness>,
    ) -> Result<Option<Self>, BinaryError> {
        if file.section_by_name(".debug_info").is_none() {
            return Ok(None);
        }
        let load = |id: gimli::SectionId| -> Result<Cow<'_, [u8]>, BinaryError> {
            match file.section_by_name(id.name()) {
                Some(s) => s.uncompressed_data().map_err(err),
                None => Ok(Cow::Borrowed(&[][..])),
            }
        };
        let sections = gimli::DwarfSections::load(load)?;
        let dwarf = sections.borrow(|s| EndianSlice::new(s, LittleEndian));
        let mut types = Types::default();
        let mut units = dwarf.units();
        while let Some(header) = units.next().map_err(err)? {
            let unit = dwarf.unit(header).map_err(err)?;
            let base = header.offset().as_debug_info_offset().map_or(0, |o| o.0);
            let global = |v: AttributeValue<EndianSlice<'_, LittleEndian>>| match v {
                AttributeValue::UnitRef(o) => Some(base + o.0),
                AttributeValue::DebugInfoRef(o) => Some(o.0),
                _ => None,
            };
            let name_of =
                |e: &gimli::DebuggingInformationEntry<'_, '_, EndianSlice<'_, LittleEndian>>| {
                    e.attr_value(gimli::DW_AT_name)
                        .ok()
                        .flatten()
                        .and_then(|v| dwarf.attr_string(&unit, v).ok())
                        .and_then(|s| s.to_string().ok().map(str::to_string))
                };
            let mut tree = unit.entries_tree(None).map_err(err)?;
            let root = tree.root().map_err(err)?;
            let mut children = root.children();
            while let Some(node) = children.next().map_err(err)? {
                let entry = node.entry();
                let at = base + entry.offset().0;
                match entry.tag() {
                    gimli::DW_TAG_typedef => {
                        if let Some(t) = entry
                            .attr_value(gimli::DW_AT_type)
                            .ok()
                            .flatten()
                            .and_then(global)
                        {
                            types.typedefs.insert(at, t);
                        }
                    }
                    gimli::DW_TAG_structure_type => {
                        if let Some(name) = name_of(entry) {
                            types.by_name.entry(name).or_insert(at);
                        }
                        let mut members = Vec::new();
                        let mut kids = node.children();
                        while let Some(child) = kids.next().map_err(err)? {
                            let m = child.entry();
                            if m.tag() != gimli::DW_TAG_member {
                                continue;
                            }
                            let offset = match m
                                .attr_value(gimli::DW_AT_data_member_location)
                                .map_err(err)?
                            {
                                Some(AttributeValue::Udata(o)) => o,
                                Some(AttributeValue::Data1(o)) => o.into(),
                                Some(AttributeValue::Data2(o)) => o.into(),
                                Some(AttributeValue::Data4(o)) => o.into(),
                                Some(AttributeValue::Data8(o)) => o,
                                Some(AttributeValue::Sdata(o)) => o as u64,
                                _ => continue,
                            };
                            members.push(Member {
                                name: name_of(m).unwrap_or_default(),
                                offset,
                                ty: m
                                    .attr_value(gimli::DW_AT_type)
                                    .ok()
                                    .flatten()
                                    .and_then(global),
                            });
                        }
                        types.structs.insert(at, members);
                    }
                    _ => {}
                }
            }
        }
        Ok(Some(types))
    }

    fn resolve(&self, mut die: usize) -> usize {
        for _ in 0..16 {
            match self.typedefs.get(&die) {
                Some(&t) => die = t,
                None => break,
            }
        }
        die
    }

    /// The offset of `fields` (e.g. `["gFree", "stack", "size"]`) within struct `ty` (e.g.
    /// `runtime.schedt`). Embedded fields are searched when a name is not a direct member.
    pub fn offset(&self, ty: &str, fields: &[&str]) -> Option<u64> {
        let mut die = *self.by_name.get(ty)?;
        let mut total = 0;
        for field in fields {
            let (off, next) = self.member(self.resolve(die), field, 0)?;
            total += off;
            die = next?;
        }
        Some(total)
    }

    /// `field` in struct `die`: (offset, its type), looking into embedded structs too.
    fn member(&self, die: usize, field: &str, depth: u32) -> Option<(u64, Option<usize>)> {
        let members = self.structs.get(&die)?;
        if let Some(m) = members.iter().find(|m| m.name == field) {
            return Some((m.offset, m.ty));
        }
        if depth > 4 {
            return None;
        }
        // Go names an embedded field after its type (e.g. `gList` in `struct { gList; n int32 }`).
        members.iter().find_map(|m| {
            let ty = self.resolve(m.ty?);
            let (off, t) = self.member(ty, field, depth + 1)?;
            Some((m.offset + off, t))
        })
    }

    pub fn has(&self, ty: &str, fields: &[&str]) -> bool {
        self.offset(ty, fields).is_some()
    }
}

impl From<gimli::Error> for BinaryError {
    fn from(e: gimli::Error) -> Self {
        err(e)
    }
}
