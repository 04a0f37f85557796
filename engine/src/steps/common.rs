//! Helpers shared by several steps, depending on no step: the `OutputSchema` block, CSV
//! dialect options (delimiter, encoding).

use crate::config::Node;
use crate::error::Result;
use crate::schema::DataType;

/// One column of `OutputSchema.Columns`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDef {
    /// Column name.
    pub name: String,
    /// Type.
    pub data_type: DataType,
    /// Position of the field in each record (defaults to the column's position in the list).
    pub index: usize,
    /// Whether an empty field is allowed (as null).
    pub nullable: bool,
}

/// Parses a delimiter as written in pipeline files: `,`, `\t`, `tab`, `|`, `;`.
pub(crate) fn parse_delimiter(s: &str) -> std::result::Result<u8, String> {
    match s {
        "\\t" | "\t" => return Ok(b'\t'),
        _ if s.eq_ignore_ascii_case("tab") => return Ok(b'\t'),
        _ if s.eq_ignore_ascii_case("comma") => return Ok(b','),
        _ if s.eq_ignore_ascii_case("pipe") => return Ok(b'|'),
        _ if s.eq_ignore_ascii_case("semicolon") => return Ok(b';'),
        _ => {}
    }
    match s.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' && *b != b'"' => Ok(*b),
        _ => Err(format!("delimiter '{s}' must be one ASCII character (or \\t / tab)")),
    }
}

/// Accepts UTF-8 with or without BOM; anything else is refused up front rather than
/// mis-decoded.
pub(crate) fn check_encoding(s: &str) -> std::result::Result<(), String> {
    let n = s.to_ascii_lowercase().replace(['-', '_', ' '], "");
    if matches!(n.as_str(), "utf8" | "utf8bom" | "utf8withbom" | "utf8nobom" | "ascii" | "") {
        Ok(())
    } else {
        Err(format!(
            "encoding '{s}' is not supported; use UTF-8 (with or without BOM) — convert the file with iconv"
        ))
    }
}

/// Parses an `OutputSchema` block: `{Name, Description, Columns: [{Name, Type, Index,
/// IsNullable}]}` or the JavaScript form `{Fields: [{Name, Type, Required}]}`.
///
/// # Errors
/// Unknown type names, unknown keys, an empty list.
pub(crate) fn parse_output_schema(n: &Node<'_>) -> Result<Vec<ColumnDef>> {
    let mut s = n.obj()?;
    s.take(&["Name"])?;
    s.take(&["Description"])?;
    let cols = s.require(&["Columns", "Fields"])?;
    let mut defs = Vec::new();
    for (i, item) in cols.list()?.iter().enumerate() {
        let mut f = item.obj()?;
        let name = f.require(&["Name"])?.string()?;
        let tnode = f.require(&["Type", "DataType"])?;
        let tname = tnode.string()?;
        let data_type =
            DataType::parse(&tname).ok_or_else(|| tnode.err(format!("unknown type '{tname}'; use one of {}", DataType::SPELLINGS)))?;
        let index = f
            .take(&["Index", "Ordinal"])?
            .map(|n| n.u64())
            .transpose()?
            .map_or(i, |v| v as usize);
        let mut nullable = true;
        if let Some(n) = f.take(&["IsNullable", "Nullable"])? {
            nullable = n.bool()?;
        }
        if let Some(n) = f.take(&["Required", "IsRequired"])? {
            nullable = !n.bool()?;
        }
        f.take(&["Description"])?;
        f.take(&["Format"])?;
        f.finish()?;
        defs.push(ColumnDef {
            name,
            data_type,
            index,
            nullable,
        });
    }
    s.finish()?;
    if defs.is_empty() {
        return Err(cols.err("the schema has no columns; list at least one"));
    }
    Ok(defs)
}
