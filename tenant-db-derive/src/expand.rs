//! Code generation: `derive → parse → validate → expand`, errors become `compile_error!`.

use crate::model::{self, Field, Kind, Model};
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::ext::IdentExt;
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

/// `TenantTable`: the table's kind names its tenant column, and each field's column gets its
/// role (the tenant key, or data), once per column.
fn expand_tenant(model: Model) -> TokenStream {
    let table = &model.table;
    let Some((tenant, tenant_ty)) = model.tenant_column.as_ref() else {
        return crate::attrs::call_site_error("tenant column not resolved").into_compile_error();
    };
    let tenant_name = tenant.unraw().to_string();
    let mut seen = vec![tenant_name.clone()];
    let data_columns = model
        .fields
        .iter()
        .filter(|f| f.is_column())
        .filter(|f| {
            let name = f.column_name();
            let fresh = !seen.contains(&name);
            seen.push(name);
            fresh
        })
        .map(|f| {
            let column = &f.column;
            quote_spanned! {column.span()=>
                impl ::tenant_db::ColumnRole for #table::#column {
                    type Role = ::tenant_db::role::Data;
                }
            }
        });
    // The field's type must hold the column's key type (`Uuid` for `uuid`, `i64` for
    // `bigint`, …); checked where the expansion compiles, reported at the field's type.
    let check = quote_spanned! {tenant_ty.span()=>
        ::tenant_db::assert_tenant_field::<#table::#tenant, #tenant_ty>()
    };
    quote! {
        const _: () = {
            impl ::tenant_db::Classified for #table::table {
                type Kind = ::tenant_db::kind::Tenant<#table::#tenant>;
            }
            impl ::tenant_db::ColumnRole for #table::#tenant {
                type Role = ::tenant_db::role::TenantKey;
            }
            #(#data_columns)*
            ::tenant_db::registry::inventory::submit! {
                ::tenant_db::registry::Entry::tenant::<#table::table>(::core::module_path!())
            }
        };
        const _: () = #check;
    }
}

/// `GlobalTable`: the kind, and the check that the table has no `tenant_id` column (unless
/// the model opts out).
fn expand_global(model: Model) -> TokenStream {
    let table = &model.table;
    if model.unscoped_tenant_column {
        return quote! {
            const _: () = {
                impl ::tenant_db::Classified for #table::table {
                    type Kind = ::tenant_db::kind::UnscopedGlobal;
                }
                ::tenant_db::registry::inventory::submit! {
                    ::tenant_db::registry::Entry::global::<#table::table>(::core::module_path!())
                }
            };
        };
    }
    quote! {
        const _: () = {
            impl ::tenant_db::Classified for #table::table {
                type Kind = ::tenant_db::kind::Global;
            }
            ::tenant_db::assert_global::<#table::table>();
            ::tenant_db::registry::inventory::submit! {
                ::tenant_db::registry::Entry::global::<#table::table>(::core::module_path!())
            }
        };
    }
}

/// One element of a value struct's `Insert` or `Update` tuple: its type and how to build it.
struct Element {
    ty: TokenStream,
    expr: TokenStream,
}

/// Whether the elements are built from `self` by value, or from `&'__tenant_db_v Self`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Receiver {
    Owned,
    Borrowed,
}

/// Which statement an element is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Statement {
    Insert,
    Update,
}

/// The element field `f` contributes to `statement`, if any.
fn element(model: &Model, f: &Field, statement: Statement, receiver: Receiver) -> Option<Element> {
    let table = &model.table;
    let ident = &f.ident;
    let skipped = match statement {
        Statement::Insert => f.attrs.skip_insertion,
        Statement::Update => {
            f.attrs.skip_update || (f.is_column() && model.primary_key.contains(&f.column_name()))
        }
    };
    if skipped {
        return None;
    }
    let ty = &f.ty;
    let values = quote!(::tenant_db::TenantValues<#table::table>);
    if f.attrs.embed {
        let (assoc, method) = match statement {
            Statement::Insert => (quote!(Insert), quote!(into_insert)),
            Statement::Update => (quote!(Update), quote!(into_update)),
        };
        return Some(match receiver {
            Receiver::Owned => Element {
                ty: quote!(<#ty as #values>::#assoc),
                expr: quote!(<#ty as #values>::#method(self.#ident)),
            },
            Receiver::Borrowed => Element {
                ty: quote!(<&'__tenant_db_v #ty as #values>::#assoc),
                expr: quote!(<&'__tenant_db_v #ty as #values>::#method(&self.#ident)),
            },
        });
    }
    let column = &f.column;
    let (value_ty, value) = match (&f.attrs.serialize_as, receiver) {
        (Some(target), _) => (
            target.clone(),
            quote!(<#ty as ::core::convert::Into<#target>>::into(self.#ident)),
        ),
        (None, _) => (ty.clone(), quote!(self.#ident)),
    };
    // diesel's rule: an `Option` field writes the column's default (insert) or leaves the
    // column alone (update) when `None`, unless the struct or field says otherwise.
    let none_is_absent = match statement {
        Statement::Insert => f
            .attrs
            .treat_none_as_default_value
            .unwrap_or(model.treat_none_as_default_value),
        Statement::Update => !f
            .attrs
            .treat_none_as_null
            .unwrap_or(model.treat_none_as_null),
    };
    let assign = quote!(::tenant_db::assign(#table::#column, v));
    Some(
        match (model::option_inner(&value_ty), none_is_absent, receiver) {
            (Some(inner), true, Receiver::Owned) => Element {
                ty: quote!(::core::option::Option<::tenant_db::AssignOf<#table::#column, #inner>>),
                expr: quote!(::core::option::Option::map(#value, |v| #assign)),
            },
            (Some(inner), true, Receiver::Borrowed) => Element {
                ty: quote!(::core::option::Option<
                ::tenant_db::AssignOf<#table::#column, &'__tenant_db_v #inner>
            >),
                expr: quote!(::core::option::Option::map(
                    ::core::option::Option::as_ref(&self.#ident),
                    |v| #assign
                )),
            },
            (_, _, Receiver::Owned) => Element {
                ty: quote!(::tenant_db::AssignOf<#table::#column, #value_ty>),
                expr: quote!(::tenant_db::assign(#table::#column, #value)),
            },
            (_, _, Receiver::Borrowed) => Element {
                ty: quote!(::tenant_db::AssignOf<#table::#column, &'__tenant_db_v #value_ty>),
                expr: quote!(::tenant_db::assign(#table::#column, &self.#ident)),
            },
        },
    )
}

/// The most elements tenant-db's checked tuples hold; longer lists nest.
const TUPLE_MAX: usize = 12;

/// The elements as one (nested) tuple type and expression; `()` when there are none.
fn tuple(elements: Vec<Element>) -> Element {
    if elements.len() <= TUPLE_MAX {
        let tys = elements.iter().map(|e| &e.ty);
        let exprs = elements.iter().map(|e| &e.expr);
        return Element {
            ty: quote!((#(#tys,)*)),
            expr: quote!((#(#exprs,)*)),
        };
    }
    let mut chunks = Vec::new();
    let mut rest = elements;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(TUPLE_MAX));
        chunks.push(tuple(rest));
        rest = tail;
    }
    tuple(chunks)
}

/// `TenantValues`: the struct (and `&Struct`, unless a field converts by value) as tuples of
/// `tenant_db::Assign`, the form tenant-db checks column by column; plus, per column, a check
/// where the field is declared, for an early and precise error.
fn expand_values(model: Model) -> TokenStream {
    let table = &model.table;
    let ident = &model.ident;
    let (impl_generics, ty_generics, where_clause) = model.generics.split_for_impl();
    let checks = model.fields.iter().filter(|f| f.is_column()).map(|f| {
        let column = &f.column;
        let span =
            f.ty.span()
                .join(column.span())
                .unwrap_or_else(|| column.span());
        quote_spanned! {span=>
            ::tenant_db::values::assert_writable::<#table::table, #table::#column>();
        }
    });
    let body = |receiver: Receiver| {
        let collect = |statement: Statement| {
            tuple(
                model
                    .fields
                    .iter()
                    .filter_map(|f| element(&model, f, statement, receiver))
                    .collect(),
            )
        };
        let (insert, update) = (collect(Statement::Insert), collect(Statement::Update));
        let (insert_ty, insert_expr, update_ty, update_expr) =
            (insert.ty, insert.expr, update.ty, update.expr);
        quote! {
            type Insert = #insert_ty;
            type Update = #update_ty;
            fn into_insert(self) -> Self::Insert { #insert_expr }
            fn into_update(self) -> Self::Update { #update_expr }
        }
    };
    let owned = body(Receiver::Owned);
    let borrowed = if model.fields.iter().any(|f| f.attrs.serialize_as.is_some()) {
        // `serialize_as` converts the field by value, which a borrow cannot do (as in diesel).
        quote!()
    } else {
        let mut ref_generics = model.generics.clone();
        ref_generics
            .params
            .insert(0, syn::parse_quote!('__tenant_db_v));
        let (ref_impl_generics, _, _) = ref_generics.split_for_impl();
        let body = body(Receiver::Borrowed);
        quote! {
            impl #ref_impl_generics ::tenant_db::TenantValues<#table::table>
                for &'__tenant_db_v #ident #ty_generics #where_clause {
                #body
            }
        }
    };
    quote! {
        const _: () = {
            impl #impl_generics ::tenant_db::TenantValues<#table::table>
                for #ident #ty_generics #where_clause {
                #owned
            }
            #borrowed
            #(#checks)*
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
                org_id: uuid::Uuid,
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
    fn tenant_values_diesel_attributes() {
        insta::assert_snapshot!(pretty(super::tenant_values(quote! {
            #[diesel(table_name = notes, primary_key(id), treat_none_as_null = false)]
            struct NoteChanges {
                id: i64,
                #[diesel(column_name = r#type)]
                kind: String,
                email: Option<String>,
                #[diesel(treat_none_as_null = true)]
                nickname: Option<String>,
                #[diesel(serialize_as = String)]
                label: Label,
                #[diesel(skip_update)]
                created_by: String,
                #[diesel(skip_insertion)]
                edited_by: String,
                #[diesel(embed)]
                address: Address,
            }
        })));
    }

    #[test]
    fn tenant_values_many_fields_nest() {
        let fields = (0..14).map(|i| quote::format_ident!("c{i}"));
        insta::assert_snapshot!(pretty(super::tenant_values(quote! {
            #[diesel(table_name = wide)]
            struct Wide { #(#fields: i32),* }
        })));
    }

    #[test]
    fn global_table_opt_out() {
        insta::assert_snapshot!(pretty(super::global_table(quote! {
            #[diesel(table_name = tenants)]
            #[global(unscoped_tenant_column)]
            struct TenantDirectory { tenant_id: uuid::Uuid, name: String }
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

    #[test]
    fn values_refuse_unknown_diesel_keys_and_repeated_columns() {
        insta::assert_snapshot!(pretty(super::tenant_values(quote! {
            #[diesel(table_name = notes)]
            struct A { #[diesel(deserialize_as = String)] body: String }
        })));
        insta::assert_snapshot!(pretty(super::tenant_values(quote! {
            #[diesel(table_name = notes)]
            struct B { body: String, #[diesel(column_name = r#body)] other: String }
        })));
    }

    #[test]
    fn global_refuses_a_tenant_column_field() {
        insta::assert_snapshot!(pretty(super::global_table(quote! {
            #[diesel(table_name = invoices)]
            struct Invoice { id: i64, #[diesel(column_name = r#tenant_id)] owner: uuid::Uuid }
        })));
    }

    /// The expansion as text, and whether it is a compile error.
    fn expanded(tokens: proc_macro2::TokenStream) -> (String, bool) {
        let text = tokens.to_string();
        let failed = text.contains("compile_error");
        (text, failed)
    }

    #[test]
    fn keys_tenant_db_does_not_read_are_skipped_whole_and_the_next_key_still_counts() {
        // `= value` and `(...)` forms, followed by keys that matter, at struct and field level;
        // flags followed by another key.
        let (text, failed) = expanded(super::tenant_table(quote! {
            #[diesel(table_name = notes, check_for_backend(diesel::pg::Pg), primary_key(id))]
            struct Note {
                id: i64,
                #[diesel(deserialize_as = MyUuid, column_name = tenant_id)]
                org: uuid::Uuid,
            }
        }));
        assert!(!failed, "{text}");
        assert!(text.contains("tenant_id"), "{text}");
        // A type whose generic arguments hold a comma, and expressions.
        let (text, failed) = expanded(super::tenant_table(quote! {
            #[diesel(table_name = notes)]
            struct Note {
                #[diesel(deserialize_as = Wrapper<A, B>, column_name = id)]
                key: i64,
                #[diesel(select_expression = notes::n.eq(1), select_expression_type = Eq<A, B>)]
                one: bool,
                #[diesel(select_expression = (notes::a, notes::b))]
                pair: (i64, i64),
                // An expression with a turbofish of two arguments, then a type of two.
                #[diesel(select_expression = f::<A, B>(notes::n), select_expression_type = F<A, B>)]
                called: bool,
                tenant_id: uuid::Uuid,
            }
        }));
        assert!(!failed, "{text}");
        let (text, failed) = expanded(super::tenant_values(quote! {
            #[diesel(table_name = notes)]
            struct NewNote {
                #[diesel(skip_update, column_name = body_text)]
                body: String,
            }
        }));
        assert!(!failed, "{text}");
        assert!(text.contains("body_text"), "{text}");
    }

    #[test]
    fn a_computed_field_is_not_the_tenant_column_and_values_refuse_it() {
        // An unknown key does not make a field computed.
        let (text, failed) = expanded(super::tenant_table(quote! {
            #[diesel(table_name = notes)]
            struct Note { id: i64, #[diesel(deserialize_as = MyUuid)] tenant_id: uuid::Uuid }
        }));
        assert!(!failed, "{text}");
        // A computed field named like the tenant column is not the tenant column.
        let (text, failed) = expanded(super::tenant_table(quote! {
            #[diesel(table_name = notes)]
            struct Note {
                id: i64,
                #[diesel(select_expression = notes::tenant_id)]
                tenant_id: uuid::Uuid,
            }
        }));
        assert!(failed && text.contains("is not among the fields"), "{text}");
        let (text, failed) = expanded(super::tenant_values(quote! {
            #[diesel(table_name = notes)]
            struct NewNote { #[diesel(select_expression = notes::id)] id: i64 }
        }));
        assert!(failed && text.contains("does not support"), "{text}");
    }

    #[test]
    fn tenant_and_global_attributes_on_a_field_are_refused() {
        for attr in [
            quote!(#[tenant(column = org_id)]),
            quote!(#[global(unscoped_tenant_column)]),
        ] {
            let (text, failed) = expanded(super::tenant_table(quote! {
                #[diesel(table_name = notes)]
                struct Note { id: i64, #attr tenant_id: uuid::Uuid }
            }));
            assert!(failed && text.contains("go on the struct"), "{text}");
        }
    }

    #[test]
    fn errors_name_the_derive() {
        for (tokens, derive) in [
            (
                super::tenant_table(quote! { #[diesel(table_name = notes)] enum E { A } }),
                "TenantTable",
            ),
            (
                super::global_table(quote! { #[diesel(table_name = c)] struct C(i64); }),
                "GlobalTable",
            ),
            (
                super::tenant_values(quote! { struct V { id: i64 } }),
                "TenantValues",
            ),
        ] {
            let (text, failed) = expanded(tokens);
            assert!(
                failed && text.contains(&format!("`#[derive({derive})]`")),
                "{text}"
            );
        }
    }
}
