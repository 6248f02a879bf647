//! Parsing of `#[diesel(...)]` (the keys tenant-db reads) and `#[tenant(...)]` attributes.

use proc_macro2::{Span, TokenStream};
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, Path, Token};

/// The keys `#[tenant(...)]` accepts, listed in error messages.
const TENANT_KEYS: &str = "`column`";

/// What the struct-level attributes say.
#[derive(Default)]
pub(crate) struct StructAttrs {
    /// `#[diesel(table_name = ...)]`.
    pub(crate) table_name: Option<Path>,
    /// `#[tenant(column = ...)]`, with the span of the attribute for errors.
    pub(crate) tenant_column: Option<Ident>,
}

/// Skips the value of a `#[diesel(...)]` key tenant-db does not read (`key = value` or `key(...)`).
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        input.parse::<syn::Expr>()?;
    } else if input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// Reads the struct-level attributes; `allow_tenant` says whether `#[tenant]` is meaningful.
pub(crate) fn parse_struct_attrs(
    attrs: &[Attribute],
    allow_tenant: bool,
) -> syn::Result<StructAttrs> {
    let mut out = StructAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("diesel") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("table_name") {
                    let value: Path = meta.value()?.parse()?;
                    if out.table_name.replace(value).is_some() {
                        return Err(meta.error("`table_name` is given more than once"));
                    }
                    Ok(())
                } else {
                    skip_value(meta.input)
                }
            })?;
        } else if attr.path().is_ident("tenant") {
            if !allow_tenant {
                return Err(syn::Error::new(
                    attr.span(),
                    "`#[tenant(...)]` belongs on a `#[derive(TenantTable)]` model",
                ));
            }
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("column") {
                    let value: Ident = meta.value()?.parse()?;
                    if out.tenant_column.is_some() {
                        return Err(meta.error("`column` is given more than once"));
                    }
                    out.tenant_column = Some(value);
                    Ok(())
                } else {
                    Err(meta.error(format_args!(
                        "unknown key `{}` in `#[tenant(...)]`; valid keys: {TENANT_KEYS}",
                        meta.path
                            .get_ident()
                            .map(ToString::to_string)
                            .unwrap_or_else(|| "?".into())
                    )))
                }
            })?;
        }
    }
    Ok(out)
}

/// Reads `#[diesel(column_name = ...)]` on a field, if present.
pub(crate) fn field_column_name(attrs: &[Attribute]) -> syn::Result<Option<Ident>> {
    let mut name = None;
    for attr in attrs {
        if attr.path().is_ident("diesel") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("column_name") {
                    let value: Ident = meta.value()?.parse()?;
                    if name.replace(value).is_some() {
                        return Err(meta.error("`column_name` is given more than once"));
                    }
                    Ok(())
                } else {
                    skip_value(meta.input)
                }
            })?;
        } else if attr.path().is_ident("tenant") {
            return Err(syn::Error::new(
                attr.span(),
                "`#[tenant(...)]` goes on the struct, not on a field: `#[tenant(column = ...)]`",
            ));
        }
    }
    Ok(name)
}

/// An error at the call site, for things with no better span.
pub(crate) fn call_site_error(msg: &str) -> syn::Error {
    syn::Error::new(Span::call_site(), msg)
}
