//! Parsing of the attributes the derives read: `#[diesel(...)]` (the keys that decide which
//! columns a model maps and what a value struct writes), `#[tenant(...)]` and `#[global(...)]`.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, LitBool, Path, Token, Type};

/// The keys `#[tenant(...)]` accepts, listed in error messages.
const TENANT_KEYS: &str = "`column`";
/// The keys `#[global(...)]` accepts.
const GLOBAL_KEYS: &str = "`unscoped_tenant_column`";
/// The field keys of `#[diesel(...)]` that `#[derive(TenantValues)]` understands; any other key
/// would change what diesel writes in a way tenant-db does not check, so it is refused.
const VALUES_FIELD_KEYS: &str = "`column_name`, `embed`, `serialize_as`, `skip_insertion`, \
                                 `skip_update`, `treat_none_as_null`, \
                                 `treat_none_as_default_value`";

/// Which derive is reading the attributes: the accepted keys differ.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// `TenantTable`: `#[tenant]` allowed.
    Tenant,
    /// `GlobalTable`: `#[global]` allowed.
    Global,
    /// `TenantValues`: strict field keys.
    Values,
}

/// What the struct-level attributes say.
#[derive(Default)]
pub(crate) struct StructAttrs {
    /// `#[diesel(table_name = ...)]`.
    pub(crate) table_name: Option<Path>,
    /// `#[diesel(primary_key(...))]`: columns an update never sets (diesel's rule).
    pub(crate) primary_key: Option<Vec<Ident>>,
    /// `#[diesel(treat_none_as_null = ...)]` (updates).
    pub(crate) treat_none_as_null: Option<bool>,
    /// `#[diesel(treat_none_as_default_value = ...)]` (inserts).
    pub(crate) treat_none_as_default_value: Option<bool>,
    /// `#[tenant(column = ...)]`.
    pub(crate) tenant_column: Option<Ident>,
    /// `#[global(unscoped_tenant_column)]`.
    pub(crate) unscoped_tenant_column: bool,
}

/// What a field's attributes say.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    /// `#[diesel(column_name = ...)]`.
    pub(crate) column_name: Option<Ident>,
    /// `#[diesel(embed)]`.
    pub(crate) embed: bool,
    /// `#[diesel(serialize_as = Type)]`.
    pub(crate) serialize_as: Option<Type>,
    /// `#[diesel(skip_insertion)]`.
    pub(crate) skip_insertion: bool,
    /// `#[diesel(skip_update)]`.
    pub(crate) skip_update: bool,
    /// `#[diesel(treat_none_as_null = ...)]`.
    pub(crate) treat_none_as_null: Option<bool>,
    /// `#[diesel(treat_none_as_default_value = ...)]`.
    pub(crate) treat_none_as_default_value: Option<bool>,
    /// `#[diesel(select_expression = ...)]`: the field is computed, not a column.
    pub(crate) select_expression: bool,
}

/// Skips the value of a `#[diesel(...)]` key tenant-db does not read (`key = value` or
/// `key(...)`): a type (whose generic arguments may hold commas, `Wrapper<A, B>`) when it reads
/// as one up to the next key, else an expression.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        let as_type = input.fork();
        if as_type.parse::<Type>().is_ok() && (as_type.is_empty() || as_type.peek(Token![,])) {
            input.parse::<Type>()?;
        } else {
            input.parse::<syn::Expr>()?;
        }
    } else if input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in input);
        content.parse::<TokenStream>()?;
    }
    Ok(())
}

/// The name of a meta key, for error messages.
fn key_name(meta: &ParseNestedMeta<'_>) -> String {
    meta.path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| "?".into())
}

/// Stores a value that may be given once.
fn once<T>(slot: &mut Option<T>, value: T, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if slot.replace(value).is_some() {
        return Err(meta.error(format_args!("`{}` is given more than once", key_name(meta))));
    }
    Ok(())
}

/// A flag key, alone (`embed`) or with a boolean (`embed = true` is not diesel's form, so only
/// the bare form is accepted for flags; booleans are read by [`bool_value`]).
fn flag(slot: &mut bool, meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if *slot {
        return Err(meta.error(format_args!("`{}` is given more than once", key_name(meta))));
    }
    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        return Err(meta.error(format_args!("`{}` takes no value", key_name(meta))));
    }
    *slot = true;
    Ok(())
}

/// `key = true` / `key = false`.
fn bool_value(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    let lit: LitBool = meta.value()?.parse()?;
    Ok(lit.value)
}

/// Reads the struct-level attributes.
pub(crate) fn parse_struct_attrs(attrs: &[Attribute], reader: Reader) -> syn::Result<StructAttrs> {
    let mut out = StructAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("diesel") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("table_name") {
                    let value: Path = meta.value()?.parse()?;
                    once(&mut out.table_name, value, &meta)
                } else if meta.path.is_ident("primary_key") {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let keys = content
                        .parse_terminated(Ident::parse_any, Token![,])?
                        .into_iter()
                        .collect();
                    once(&mut out.primary_key, keys, &meta)
                } else if meta.path.is_ident("treat_none_as_null") {
                    let v = bool_value(&meta)?;
                    once(&mut out.treat_none_as_null, v, &meta)
                } else if meta.path.is_ident("treat_none_as_default_value") {
                    let v = bool_value(&meta)?;
                    once(&mut out.treat_none_as_default_value, v, &meta)
                } else {
                    skip_value(meta.input)
                }
            })?;
        } else if attr.path().is_ident("tenant") {
            if reader != Reader::Tenant {
                return Err(syn::Error::new(
                    attr.span(),
                    "`#[tenant(...)]` belongs on a `#[derive(TenantTable)]` model",
                ));
            }
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("column") {
                    let value = Ident::parse_any(meta.value()?)?;
                    once(&mut out.tenant_column, value, &meta)
                } else {
                    Err(meta.error(format_args!(
                        "unknown key `{}` in `#[tenant(...)]`; valid keys: {TENANT_KEYS}",
                        key_name(&meta)
                    )))
                }
            })?;
        } else if attr.path().is_ident("global") {
            if reader != Reader::Global {
                return Err(syn::Error::new(
                    attr.span(),
                    "`#[global(...)]` belongs on a `#[derive(GlobalTable)]` model",
                ));
            }
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("unscoped_tenant_column") {
                    flag(&mut out.unscoped_tenant_column, &meta)
                } else {
                    Err(meta.error(format_args!(
                        "unknown key `{}` in `#[global(...)]`; valid keys: {GLOBAL_KEYS}",
                        key_name(&meta)
                    )))
                }
            })?;
        }
    }
    Ok(out)
}

/// Reads a field's attributes.
pub(crate) fn parse_field_attrs(attrs: &[Attribute], reader: Reader) -> syn::Result<FieldAttrs> {
    let mut out = FieldAttrs::default();
    for attr in attrs {
        if attr.path().is_ident("diesel") {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("column_name") {
                    let value = Ident::parse_any(meta.value()?)?;
                    once(&mut out.column_name, value, &meta)
                } else if meta.path.is_ident("embed") {
                    flag(&mut out.embed, &meta)
                } else if meta.path.is_ident("serialize_as") {
                    let ty: Type = meta.value()?.parse()?;
                    once(&mut out.serialize_as, ty, &meta)
                } else if meta.path.is_ident("skip_insertion") {
                    flag(&mut out.skip_insertion, &meta)
                } else if meta.path.is_ident("skip_update") {
                    flag(&mut out.skip_update, &meta)
                } else if meta.path.is_ident("treat_none_as_null") {
                    let v = bool_value(&meta)?;
                    once(&mut out.treat_none_as_null, v, &meta)
                } else if meta.path.is_ident("treat_none_as_default_value") {
                    let v = bool_value(&meta)?;
                    once(&mut out.treat_none_as_default_value, v, &meta)
                } else if meta.path.is_ident("select_expression") && reader != Reader::Values {
                    out.select_expression = true;
                    skip_value(meta.input)
                } else if reader == Reader::Values {
                    Err(meta.error(format_args!(
                        "`#[derive(TenantValues)]` does not support `#[diesel({})]`: it would \
                         change what is written in a way tenant-db does not check; supported \
                         keys: {VALUES_FIELD_KEYS}",
                        key_name(&meta)
                    )))
                } else {
                    skip_value(meta.input)
                }
            })?;
        } else if attr.path().is_ident("tenant") || attr.path().is_ident("global") {
            return Err(syn::Error::new(
                attr.span(),
                "`#[tenant(...)]` / `#[global(...)]` go on the struct, not on a field",
            ));
        }
    }
    Ok(out)
}

/// An error at the call site, for things with no better span.
pub(crate) fn call_site_error(msg: &str) -> syn::Error {
    syn::Error::new(Span::call_site(), msg)
}
