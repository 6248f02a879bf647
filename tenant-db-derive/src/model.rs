//! The validated model a derive expands from.

use crate::attrs::{call_site_error, field_column_name, parse_struct_attrs};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Path, Type};

/// One field and the column it maps to.
pub(crate) struct FieldColumn {
    /// The column's name in the diesel table (`#[diesel(column_name)]` or the field name).
    pub(crate) column: Ident,
    /// The field's type.
    pub(crate) ty: Type,
}

/// A struct that names a diesel table, with its fields' columns.
pub(crate) struct Model {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) table: Path,
    pub(crate) fields: Vec<FieldColumn>,
    pub(crate) tenant_column: Option<Ident>,
}

/// Which derive is being validated: the rules differ slightly.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tenant,
    Global,
    Values,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Tenant => "TenantTable",
            Kind::Global => "GlobalTable",
            Kind::Values => "TenantValues",
        }
    }
}

/// Parses and validates a derive input into a [`Model`].
pub(crate) fn parse(input: DeriveInput, kind: Kind) -> syn::Result<Model> {
    let attrs = parse_struct_attrs(&input.attrs, kind == Kind::Tenant)?;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            format!(
                "`#[derive({})]` supports structs with named fields only",
                kind.name()
            ),
        ));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new(
            input.ident.span(),
            format!(
                "`#[derive({})]` supports structs with named fields only",
                kind.name()
            ),
        ));
    };
    let Some(table) = attrs.table_name else {
        return Err(syn::Error::new(
            input.ident.span(),
            format!(
                "`#[derive({})]` needs the diesel table: add `#[diesel(table_name = your_table)]`",
                kind.name()
            ),
        ));
    };
    let mut fields = Vec::with_capacity(named.named.len());
    for field in &named.named {
        let Some(ident) = field.ident.clone() else {
            return Err(call_site_error(
                "unnamed field in a struct with named fields",
            ));
        };
        let column = field_column_name(&field.attrs)?.unwrap_or(ident);
        fields.push(FieldColumn {
            column,
            ty: field.ty.clone(),
        });
    }
    let tenant_column = match kind {
        Kind::Tenant => {
            let wanted = attrs
                .tenant_column
                .unwrap_or_else(|| Ident::new("tenant_id", input.ident.span()));
            let Some(field) = fields.iter().find(|f| f.column == wanted) else {
                return Err(syn::Error::new(
                    wanted.span(),
                    format!(
                        "the tenant column `{wanted}` is not among the fields of `{}`; \
                         add it, or name the right one with `#[tenant(column = ...)]`",
                        input.ident
                    ),
                ));
            };
            if !is_uuid_type(&field.ty) {
                return Err(syn::Error::new(
                    field.ty.span(),
                    format!(
                        "the tenant column `{wanted}` must be a `Uuid` (or `tenant_db::TenantId`)"
                    ),
                ));
            }
            Some(wanted)
        }
        Kind::Global | Kind::Values => None,
    };
    Ok(Model {
        ident: input.ident,
        generics: input.generics,
        table,
        fields,
        tenant_column,
    })
}

/// Whether a field type is `Uuid` / `TenantId` (by its last path segment, any prefix).
fn is_uuid_type(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            p.path.segments.last().is_some_and(|s| {
                s.arguments.is_none() && (s.ident == "Uuid" || s.ident == "TenantId")
            })
        }
        Type::Group(g) => is_uuid_type(&g.elem),
        _ => false,
    }
}
