//! Code generation: `derive → parse → validate → expand`, errors become `compile_error!`.

use crate::model::{self, Kind, Model};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

fn run(input: TokenStream, kind: Kind, expand: fn(Model) -> TokenStream) -> TokenStream {
    syn::parse2::<DeriveInput>(input)
        .and_then(|input| model::parse(input, kind))
        .map(expand)
        .unwrap_or_else(syn::Error::into_compile_error)
}

/// `#[derive(TenantTable)]`.
pub(crate) fn tenant_table(input: TokenStream) -> TokenStream {
    run(input, Kind::Tenant, expand_tenant)
}

/// `#[derive(GlobalTable)]`.
pub(crate) fn global_table(input: TokenStream) -> TokenStream {
    run(input, Kind::Global, expand_global)
}

/// `#[derive(TenantValues)]`.
pub(crate) fn tenant_values(input: TokenStream) -> TokenStream {
    run(input, Kind::Values, expand_values)
}

/// What both table derives emit: the seal, the kind-specific impls, and `NonTenantColumn` for
/// every field's column except the tenant column.
fn classify(model: &Model, kind_impls: TokenStream) -> TokenStream {
    let table = &model.table;
    let writable = model
        .fields
        .iter()
        .filter(|f| Some(&f.column) != model.tenant_column.as_ref())
        .map(|f| {
            let column = &f.column;
            quote_spanned! {column.span()=>
                impl ::tenant_db::NonTenantColumn for #table::#column {}
            }
        });
    quote! {
        const _: () = {
            impl ::tenant_db::__private::Sealed for #table::table {}
            #kind_impls
            #(#writable)*
        };
    }
}

fn expand_tenant(model: Model) -> TokenStream {
    let table = &model.table;
    let Some(tenant) = model.tenant_column.as_ref() else {
        return crate::attrs::call_site_error("tenant column not resolved").into_compile_error();
    };
    let tenant_name = tenant.to_string();
    classify(
        &model,
        quote! {
            impl ::tenant_db::Classified for #table::table {
                type Kind = ::tenant_db::__private::TenantKind;
            }
            impl ::tenant_db::TenantTable for #table::table {
                type TenantColumn = #table::#tenant;
                const TENANT_COLUMN: &'static str = #tenant_name;
                fn tenant_column() -> Self::TenantColumn {
                    #table::#tenant
                }
            }
        },
    )
}

fn expand_global(model: Model) -> TokenStream {
    let table = &model.table;
    classify(
        &model,
        quote! {
            impl ::tenant_db::Classified for #table::table {
                type Kind = ::tenant_db::__private::GlobalKind;
            }
            impl ::tenant_db::GlobalTable for #table::table {}
        },
    )
}

fn expand_values(model: Model) -> TokenStream {
    let table = &model.table;
    let ident = &model.ident;
    let (impl_generics, ty_generics, where_clause) = model.generics.split_for_impl();
    let checks = model.fields.iter().map(|f| {
        let column = &f.column;
        let span =
            f.ty.span()
                .join(column.span())
                .unwrap_or_else(|| column.span());
        quote_spanned! {span=>
            ::tenant_db::__private::assert_writable::<#table::table, #table::#column>();
        }
    });
    // `&'__tenant_db_v Struct` is insertable too (diesel derives both), so mark both.
    let mut ref_generics = model.generics.clone();
    ref_generics
        .params
        .insert(0, syn::parse_quote!('__tenant_db_v));
    let (ref_impl_generics, _, _) = ref_generics.split_for_impl();
    quote! {
        const _: () = {
            impl #impl_generics ::tenant_db::__private::SealedValues<#table::table>
                for #ident #ty_generics #where_clause {
                type WithTenant<E: ::core::clone::Clone> = (E, Self);
                type Changes = Self;
                type Probe = ::tenant_db::__private::PlainValues;
                fn with_tenant<E: ::core::clone::Clone>(self, tenant: E) -> (E, Self) { (tenant, self) }
                fn changes(self) -> Self { self }
            }
            impl #impl_generics ::tenant_db::TenantValues<#table::table>
                for #ident #ty_generics #where_clause {}
            impl #ref_impl_generics ::tenant_db::__private::SealedValues<#table::table>
                for &'__tenant_db_v #ident #ty_generics #where_clause {
                type WithTenant<E: ::core::clone::Clone> = (E, Self);
                type Changes = Self;
                type Probe = ::tenant_db::__private::PlainValues;
                fn with_tenant<E: ::core::clone::Clone>(self, tenant: E) -> (E, Self) { (tenant, self) }
                fn changes(self) -> Self { self }
            }
            impl #ref_impl_generics ::tenant_db::TenantValues<#table::table>
                for &'__tenant_db_v #ident #ty_generics #where_clause {}
            #[allow(dead_code)]
            fn __tenant_db_check_columns() {
                #(#checks)*
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    /// The expansion, pretty-printed (or the raw tokens if it is not a valid file).
    fn pretty(tokens: proc_macro2::TokenStream) -> String {
        match syn::parse2::<syn::File>(tokens.clone()) {
            Ok(file) => prettyplease::unparse(&file),
            Err(_) => tokens.to_string(),
        }
    }

    #[test]
    fn tenant_table_default_column() {
        insta::assert_snapshot!(pretty(super::tenant_table(quote! {
            #[diesel(table_name = notes)]
            struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
        })));
    }

    #[test]
    fn tenant_table_renamed_column() {
        insta::assert_snapshot!(pretty(super::tenant_table(quote! {
            #[diesel(table_name = crate::schema::notes, check_for_backend(diesel::pg::Pg))]
            #[tenant(column = org_id)]
            struct Note {
                id: i64,
                org_id: tenant_db::TenantId,
                #[diesel(column_name = text)]
                body: String,
            }
        })));
    }

    #[test]
    fn global_table() {
        insta::assert_snapshot!(pretty(super::global_table(quote! {
            #[diesel(table_name = countries)]
            struct Country { code: String, name: String }
        })));
    }

    #[test]
    fn tenant_values_generic() {
        insta::assert_snapshot!(pretty(super::tenant_values(quote! {
            #[diesel(table_name = notes)]
            struct NewNote<'a> { id: i64, body: &'a str }
        })));
    }

    #[test]
    fn misuse_becomes_compile_error() {
        insta::assert_snapshot!(pretty(super::tenant_table(quote! {
            #[diesel(table_name = notes)]
            #[tenant(colum = org_id)]
            struct Note { id: i64, org_id: uuid::Uuid }
        })));
    }
}
