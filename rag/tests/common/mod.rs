//! What several retrieval tests share.

use leitwerk_rag::documents::{self, Document};

/// The colours of the catalogue's items.
pub const COLOURS: [&str; 6] = ["black", "white", "red", "blue", "green", "grey"];
/// The catalogue's items.
pub const ITEMS: [&str; 4] = ["tote bag", "water bottle", "notebook", "hoodie"];

/// 24 catalogue pages that differ mainly in their SKU, which embeddings barely tell apart.
pub fn catalogue() -> anyhow::Result<Vec<Document>> {
    let mut docs = Vec::new();
    for (i, item) in ITEMS.iter().enumerate() {
        for (j, colour) in COLOURS.iter().enumerate() {
            let sku = sku(i, j);
            let text = format!(
                "# Lumen {item}, {colour}\n\nBranded {item} in {colour} for event giveaways. SKU {sku}. Ships in five days; minimum order 50 pieces.\n"
            );
            docs.push(documents::read(
                "catalogue",
                &format!("{sku}.md"),
                text.as_bytes(),
            )?);
        }
    }
    Ok(docs)
}

/// The SKU of item `i` in colour `j`.
pub fn sku(i: usize, j: usize) -> String {
    format!("LM{}{}X{}", 40 + i * 7, j * 3 + 1, (i + j) % 10)
}
