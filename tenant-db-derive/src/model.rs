//! The validated model a derive expands from.

use crate::attrs::{FieldAttrs, Reader, call_site_error, parse_field_attrs, parse_struct_attrs};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Generics, Ident, Path, Type};

/// The tenant column name tenant-db expects by default, and refuses in a global table.
pub(crate) const DEFAULT_TENANT_COLUMN: &str = "tenant_id";

/// One field and the column it maps to.
pub(crate) struct Field {
    /// The field's name.
    pub(crate) ident: Ident,
    /// The column's name in the diesel table (`#[diesel(column_name)]` or the field name), as
    /// written (possibly raw: `r#type`), for paths.
    pub(crate) column: Ident,
    /// The field's type.
    pub(crate) ty: Type,
    /// The field's attributes.
    pub(crate) attrs: FieldAttrs,
}

impl Field {
    /// The column's SQL name (a raw identifier's `r#` removed), for comparisons.
    pub(crate) fn column_name(&self) -> String {
        self.column.unraw().to_string()
    }

    /// Whether the field maps to a column of the table (not embedded, not computed).
    pub(crate) fn is_column(&self) -> bool {
        !self.attrs.embed && !self.attrs.select_expression
    }
}

/// A struct that names a diesel table, with its fields' columns.
pub(crate) struct Model {
    pub(crate) ident: Ident,
    pub(crate) generics: Generics,
    pub(crate) table: Path,
    pub(crate) fields: Vec<Field>,
    /// `TenantTable`: the tenant column, and its field's type.
    pub(crate) tenant_column: Option<(Ident, Type)>,
    /// `GlobalTable`: `#[global(unscoped_tenant_column)]`.
    pub(crate) unscoped_tenant_column: bool,
    /// `TenantValues`: columns an update never sets (`#[diesel(primary_key(...))]`, default
    /// `id`), as SQL names.
    pub(crate) primary_key: Vec<String>,
    /// `TenantValues`: `#[diesel(treat_none_as_null = ...)]` on the struct.
    pub(crate) treat_none_as_null: bool,
    /// `TenantValues`: `#[diesel(treat_none_as_default_value = ...)]` on the struct.
    pub(crate) treat_none_as_default_value: bool,
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

    fn reader(self) -> Reader {
        match self {
            Kind::Tenant => Reader::Tenant,
            Kind::Global => Reader::Global,
            Kind::Values => Reader::Values,
        }
    }
}

/// Parses and validates a derive input into a [`Model`].
pub(crate) fn parse(input: DeriveInput, kind: Kind) -> syn::Result<Model> {
    let attrs = parse_struct_attrs(&input.attrs, kind.reader())?;
    let named_only = || {
        syn::Error::new(
            input.ident.span(),
            format!(
                "`#[derive({})]` supports structs with named fields only",
                kind.name()
            ),
        )
    };
    let Data::Struct(data) = &input.data else {
        return Err(named_only());
    };
    let Fields::Named(named) = &data.fields else {
        return Err(named_only());
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
        let attrs = parse_field_attrs(&field.attrs, kind.reader())?;
        let column = attrs.column_name.clone().unwrap_or_else(|| ident.clone());
        fields.push(Field {
            ident,
            column,
            ty: field.ty.clone(),
            attrs,
        });
    }
    if kind == Kind::Values {
        check_values_fields(&input.ident, &fields)?;
    }
    let tenant_column = match kind {
        Kind::Tenant => Some(find_tenant_column(
            &input.ident,
            &fields,
            attrs.tenant_column,
        )?),
        Kind::Global => {
            if !attrs.unscoped_tenant_column {
                refuse_tenant_column_in_global(&fields)?;
            }
            None
        }
        Kind::Values => None,
    };
    Ok(Model {
        ident: input.ident,
        generics: input.generics,
        table,
        fields,
        tenant_column,
        unscoped_tenant_column: attrs.unscoped_tenant_column,
        primary_key: attrs
            .primary_key
            .map(|keys| keys.iter().map(|k| k.unraw().to_string()).collect())
            .unwrap_or_else(|| vec!["id".to_string()]),
        treat_none_as_null: attrs.treat_none_as_null.unwrap_or(false),
        treat_none_as_default_value: attrs.treat_none_as_default_value.unwrap_or(true),
    })
}

/// The tenant column of a `TenantTable` model: named by `#[tenant(column = ...)]` or
/// `tenant_id`, one of the fields, not an `Option`; with its field's type (checked against the
/// column's SQL type where the expansion compiles).
fn find_tenant_column(
    struct_ident: &Ident,
    fields: &[Field],
    named: Option<Ident>,
) -> syn::Result<(Ident, Type)> {
    let wanted = named.unwrap_or_else(|| Ident::new(DEFAULT_TENANT_COLUMN, struct_ident.span()));
    let wanted_name = wanted.unraw().to_string();
    let Some(field) = fields
        .iter()
        .find(|f| f.is_column() && f.column_name() == wanted_name)
    else {
        return Err(syn::Error::new(
            wanted.span(),
            format!(
                "the tenant column `{wanted_name}` is not among the fields of `{struct_ident}`; \
                 add it, or name the right one with `#[tenant(column = ...)]`"
            ),
        ));
    };
    if option_inner(&field.ty).is_some() {
        return Err(syn::Error::new(
            field.ty.span(),
            format!(
                "the tenant column `{wanted_name}` cannot be an `Option`: every row belongs to a \
                 tenant, so the column is `NOT NULL`"
            ),
        ));
    }
    Ok((field.column.clone(), field.ty.clone()))
}

/// A global model must not map a column named `tenant_id` (the table-level check, which also
/// sees columns the model leaves out, runs when the expansion compiles).
fn refuse_tenant_column_in_global(fields: &[Field]) -> syn::Result<()> {
    match fields
        .iter()
        .find(|f| f.is_column() && f.column_name() == DEFAULT_TENANT_COLUMN)
    {
        Some(field) => Err(syn::Error::new(
            field.column.span(),
            "this model maps a column named `tenant_id`, so the table's rows belong to \
             tenants: derive `TenantTable` for it, not `GlobalTable`. If that column is not a \
             tenant (a directory of tenants, say), opt out with \
             `#[global(unscoped_tenant_column)]`.",
        )),
        None => Ok(()),
    }
}

/// A value struct writes each column once, and has something to write.
fn check_values_fields(struct_ident: &Ident, fields: &[Field]) -> syn::Result<()> {
    let mut seen: Vec<String> = Vec::new();
    for field in fields.iter().filter(|f| f.is_column()) {
        let name = field.column_name();
        if seen.contains(&name) {
            return Err(syn::Error::new(
                field.column.span(),
                format!("column `{name}` is written by two fields of `{struct_ident}`"),
            ));
        }
        seen.push(name);
    }
    if fields.is_empty() {
        return Err(syn::Error::new(
            struct_ident.span(),
            "`#[derive(TenantValues)]` needs at least one field to write",
        ));
    }
    Ok(())
}

/// `Option<T>` → `Some(T)` (by the last path segment, as diesel's derives decide it).
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let last = p.path.segments.last()?;
            if last.ident != "Option" {
                return None;
            }
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return None;
            };
            match args.args.first() {
                Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
                _ => None,
            }
        }
        Type::Group(g) => option_inner(&g.elem),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::option_inner;
    use syn::{Type, parse_quote};

    #[test]
    fn option_is_one_type_argument_of_a_plain_path() {
        let inner = |ty: Type| option_inner(&ty).map(|t| quote::quote!(#t).to_string());
        assert_eq!(inner(parse_quote!(Option<String>)), Some("String".into()));
        assert_eq!(
            inner(parse_quote!(std::option::Option<i64>)),
            Some("i64".into())
        );
        assert_eq!(inner(parse_quote!(Option<String, A>)), None);
        assert_eq!(inner(parse_quote!(<X as Trait>::Option<String>)), None);
        assert_eq!(inner(parse_quote!(Vec<String>)), None);
        // A type passed through a `macro_rules!` fragment arrives wrapped in a group.
        let grouped = Type::Group(syn::TypeGroup {
            group_token: Default::default(),
            elem: Box::new(parse_quote!(Option<u8>)),
        });
        assert_eq!(inner(grouped), Some("u8".into()));
    }
}
