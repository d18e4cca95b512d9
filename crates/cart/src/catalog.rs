//! The catalogue: the nine products of the original sample, read from `samples/cart/` so the
//! sample's data stays apart from its code.

use askama::Template;
use serde::Deserialize;
use std::{collections::HashMap, path::Path, sync::Arc};

#[derive(Debug, Clone, Deserialize)]
pub struct Product {
    /// URL-safe identifier: `/Cart/products/{id}`.
    pub id: String,
    /// Exactly as in the original sample; it is also the form's `item` value.
    pub name: String,
    pub description: String,
    /// File under `pictures/`.
    pub picture: String,
}

#[derive(Debug, Deserialize)]
struct CatalogFile {
    products: Vec<Product>,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    products: Arc<Vec<Product>>,
    /// Picture file name to SVG text, loaded once at start.
    pictures: Arc<HashMap<String, String>>,
    /// The parts of the cart page made of the catalogue alone, rendered once: the same on
    /// every page, so escaping them per request would be wasted work. The item list once
    /// per product, with that product selected, in catalogue order.
    choices_html: Arc<[String]>,
    list_html: Arc<str>,
}

/// The `<option>`s of the cart page's item list.
#[derive(Template)]
#[template(path = "choices.html")]
struct Choices<'a> {
    products: &'a [Product],
    /// The id of the product shown selected.
    selected: &'a str,
}

/// The `<li>`s of "Our products".
#[derive(Template)]
#[template(path = "catalogue.html")]
struct CatalogueList<'a> {
    products: &'a [Product],
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid catalogue: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("catalogue problem: {0}")]
    Invalid(String),
}

impl Catalog {
    pub fn load(dir: &Path) -> Result<Self, CatalogError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
                path: path.display().to_string(),
                source,
            })
        };
        let path = dir.join("catalog.json");
        let file: CatalogFile =
            serde_json::from_str(&read(&path)?).map_err(|source| CatalogError::Parse {
                path: path.display().to_string(),
                source,
            })?;
        let mut pictures = HashMap::new();
        for p in &file.products {
            let slug_safe = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            };
            if !slug_safe(&p.id) || !slug_safe(&p.picture) || !p.picture.ends_with(".svg") {
                return Err(CatalogError::Invalid(format!(
                    "product {:?}: id and picture must be simple file-safe names, pictures .svg",
                    p.name
                )));
            }
            pictures.insert(
                p.picture.clone(),
                read(&dir.join("pictures").join(&p.picture))?,
            );
        }
        if file.products.is_empty() {
            return Err(CatalogError::Invalid("no products".into()));
        }
        let products = &file.products;
        let rendered = |r: askama::Result<String>| {
            r.map_err(|e| CatalogError::Invalid(format!("cannot render the catalogue: {e}")))
        };
        Ok(Self {
            choices_html: products
                .iter()
                .map(|p| {
                    rendered(
                        Choices {
                            products,
                            selected: &p.id,
                        }
                        .render(),
                    )
                })
                .collect::<Result<_, _>>()?,
            list_html: rendered(CatalogueList { products }.render())?.into(),
            products: Arc::new(file.products),
            pictures: Arc::new(pictures),
        })
    }

    /// The cart page's `<option>`s, one per product, as safe HTML, with the product of id
    /// `selected` selected (the first when none or an unknown one is given).
    pub fn choices_html(&self, selected: Option<&str>) -> &str {
        let index = selected
            .and_then(|id| self.products.iter().position(|p| p.id == id))
            .unwrap_or(0);
        &self.choices_html[index]
    }

    /// The "Our products" list items, as safe HTML.
    pub fn list_html(&self) -> &str {
        &self.list_html
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn by_id(&self, id: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    pub fn by_name(&self, name: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.name == name)
    }

    pub fn picture(&self, file: &str) -> Option<&str> {
        self.pictures.get(file).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_catalogue_has_the_nine_original_items() {
        let catalog =
            Catalog::load(Path::new(crate::config::DEFAULT_CATALOG)).expect("sample catalogue");
        let names: Vec<_> = catalog.products().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Beavis & Butt-head Video collection",
                "X-files movie",
                "Twin peaks tapes",
                "NIN CD",
                "JSP Book",
                "Concert tickets",
                "Love life",
                "Switch blade",
                "Rex, Rugs & Rock n' Roll"
            ]
        );
        for p in catalog.products() {
            assert!(
                catalog
                    .picture(&p.picture)
                    .is_some_and(|svg| svg.starts_with("<svg")),
                "{}",
                p.id
            );
        }
    }
}
