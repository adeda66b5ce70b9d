//! `#[maps]`: turns a struct of `(K, V)` fields into a struct of `nf::Map<K, V>` fields and
//! generates the constructors the generated glue and the author's tests use. Works on raw
//! token streams so the crate needs nothing from crates.io.
extern crate proc_macro;
use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

#[proc_macro_attribute]
pub fn maps(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return compile_error("#[maps] takes no arguments", Span::call_site());
    }
    match expand(item) {
        Ok(ts) => ts,
        Err((msg, span)) => compile_error(&msg, span),
    }
}

struct Field {
    attrs: Vec<TokenTree>,
    vis: Vec<TokenTree>,
    name: Ident,
    key: Vec<TokenTree>,
    value: Vec<TokenTree>,
}

type Error = (String, Span);

fn expand(item: TokenStream) -> Result<TokenStream, Error> {
    let tokens: Vec<TokenTree> = item.into_iter().collect();
    // outer attributes + visibility + `struct Name { ... }`
    let struct_pos = tokens
        .iter()
        .position(|t| matches!(t, TokenTree::Ident(i) if i.to_string() == "struct"))
        .ok_or_else(|| ("#[maps] must be put on a struct".to_string(), Span::call_site()))?;
    let name = match tokens.get(struct_pos + 1) {
        Some(TokenTree::Ident(i)) => i.clone(),
        _ => return Err(("#[maps]: expected the struct's name".into(), Span::call_site())),
    };
    let body = match tokens.get(struct_pos + 2) {
        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => g.clone(),
        Some(t) => {
            return Err((
                "#[maps] struct must have named fields `name: (Key, Value)` and no generics".into(),
                t.span(),
            ));
        }
        None => return Err(("#[maps] struct has no body".into(), name.span())),
    };
    let fields = parse_fields(body.stream())?;

    let mut out: Vec<TokenTree> = tokens[..struct_pos + 2].to_vec();
    let mut new_body = TokenStream::new();
    for f in &fields {
        let mut ts: Vec<TokenTree> = f.attrs.clone();
        ts.extend(f.vis.iter().cloned());
        ts.push(TokenTree::Ident(f.name.clone()));
        ts.push(punct(':'));
        ts.extend(path(&["nf", "Map"]));
        ts.push(punct('<'));
        ts.extend(f.key.iter().cloned());
        ts.push(punct(','));
        ts.extend(f.value.iter().cloned());
        ts.push(punct('>'));
        ts.push(punct(','));
        new_body.extend(ts);
    }
    out.push(TokenTree::Group(Group::new(Delimiter::Brace, new_body)));

    let n = fields.len();
    let bind_fields: String = fields
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{}: unsafe {{ ::nf::Map::__bind(handles[{i}]) }},", f.name))
        .collect();
    let test_fields: String = fields.iter().map(|f| format!("{}: ::nf::Map::__in_memory(),", f.name)).collect();
    let names: String = fields.iter().map(|f| format!("\"{}\",", f.name)).collect();
    let sizes: String = fields
        .iter()
        .map(|f| {
            let k: TokenStream = f.key.iter().cloned().collect();
            let v: TokenStream = f.value.iter().cloned().collect();
            format!("(::core::mem::size_of::<{k}>(), ::core::mem::size_of::<{v}>()),")
        })
        .collect();
    let impl_src = format!(
        "impl {name} {{
            #[doc(hidden)]
            pub const __GALETTE_MAP_NAMES: [&'static str; {n}] = [{names}];
            /// (key, value) sizes: the generated glue checks them against the map definitions.
            #[doc(hidden)]
            pub const __GALETTE_MAP_SIZES: [(usize, usize); {n}] = [{sizes}];
            /// Binds the maps to the handles the runtime gives, in declaration order.
            #[doc(hidden)]
            #[inline(always)]
            pub unsafe fn __galette_bind(handles: [::nf::__private::MapHandle; {n}]) -> Self {{
                let _ = &handles;
                {name} {{ {bind_fields} }}
            }}
            /// Empty in-memory maps for native unit tests (`cargo test`). Only meaningful in the
            /// test backend; the XDP and native builds never call it.
            #[allow(dead_code)]
            pub fn for_test() -> Self {{
                {name} {{ {test_fields} }}
            }}
        }}"
    );
    let mut result: TokenStream = out.into_iter().collect();
    result.extend(impl_src.parse::<TokenStream>().map_err(|e| (format!("#[maps] internal error: {e}"), name.span()))?);
    Ok(result)
}

fn parse_fields(body: TokenStream) -> Result<Vec<Field>, Error> {
    let toks: Vec<TokenTree> = body.into_iter().collect();
    let mut fields = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let mut attrs = Vec::new();
        // attributes: `#[...]`; `#[map(...)]` is ours (read by nf-build), strip it
        while let (Some(TokenTree::Punct(p)), Some(TokenTree::Group(g))) = (toks.get(i), toks.get(i + 1)) {
            if p.as_char() != '#' || g.delimiter() != Delimiter::Bracket {
                break;
            }
            let is_map_attr =
                matches!(g.stream().into_iter().next(), Some(TokenTree::Ident(id)) if id.to_string() == "map");
            if !is_map_attr {
                attrs.push(toks[i].clone());
                attrs.push(toks[i + 1].clone());
            }
            i += 2;
        }
        if i >= toks.len() {
            break;
        }
        let mut vis = Vec::new();
        if let Some(TokenTree::Ident(id)) = toks.get(i)
            && id.to_string() == "pub"
        {
            vis.push(toks[i].clone());
            i += 1;
            if let Some(TokenTree::Group(g)) = toks.get(i)
                && g.delimiter() == Delimiter::Parenthesis
            {
                vis.push(toks[i].clone());
                i += 1;
            }
        }
        let name = match toks.get(i) {
            Some(TokenTree::Ident(id)) => id.clone(),
            Some(t) => return Err(("#[maps]: expected a field name".into(), t.span())),
            None => return Err(("#[maps]: expected a field name".into(), Span::call_site())),
        };
        i += 1;
        match toks.get(i) {
            Some(TokenTree::Punct(p)) if p.as_char() == ':' => i += 1,
            _ => return Err((format!("#[maps]: expected `:` after field `{name}`"), name.span())),
        }
        let ty = match toks.get(i) {
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis => g.clone(),
            Some(t) => {
                return Err((format!("#[maps]: field `{name}` must have a `(Key, Value)` tuple type"), t.span()));
            }
            None => return Err((format!("#[maps]: field `{name}` has no type"), name.span())),
        };
        i += 1;
        let (key, value) = split_pair(&ty).ok_or_else(|| {
            (format!("#[maps]: field `{name}` must have exactly two types `(Key, Value)`"), ty.span())
        })?;
        match toks.get(i) {
            None => {}
            Some(TokenTree::Punct(p)) if p.as_char() == ',' => i += 1,
            Some(t) => return Err((format!("#[maps]: expected `,` after field `{name}`"), t.span())),
        }
        fields.push(Field { attrs, vis, name, key, value });
    }
    Ok(fields)
}

/// Splits `(K, V)` at its top-level comma (commas inside `<...>` belong to generics).
fn split_pair(g: &Group) -> Option<(Vec<TokenTree>, Vec<TokenTree>)> {
    let mut parts: Vec<Vec<TokenTree>> = vec![Vec::new()];
    let mut depth = 0i32;
    for t in g.stream() {
        if let TokenTree::Punct(p) = &t {
            match p.as_char() {
                '<' => depth += 1,
                '>' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(Vec::new());
                    continue;
                }
                _ => {}
            }
        }
        parts.last_mut()?.push(t);
    }
    if parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    let value = parts.pop()?;
    let key = parts.pop()?;
    Some((key, value))
}

fn punct(c: char) -> TokenTree {
    TokenTree::Punct(Punct::new(c, Spacing::Alone))
}

fn path(segments: &[&str]) -> Vec<TokenTree> {
    let mut v = Vec::new();
    for s in segments {
        v.push(TokenTree::Punct(Punct::new(':', Spacing::Joint)));
        v.push(TokenTree::Punct(Punct::new(':', Spacing::Alone)));
        v.push(TokenTree::Ident(Ident::new(s, Span::call_site())));
    }
    v
}

fn compile_error(msg: &str, span: Span) -> TokenStream {
    let mut lit = Literal::string(msg);
    lit.set_span(span);
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    let mut group = Group::new(Delimiter::Brace, TokenTree::Literal(lit).into());
    group.set_span(span);
    let mut id = Ident::new("compile_error", span);
    id.set_span(span);
    [TokenTree::Ident(id), TokenTree::Punct(bang), TokenTree::Group(group)].into_iter().collect()
}
