//! Collects every `syn::Error` a stage finds so they are reported together.

#[derive(Default)]
pub struct Errors {
    combined: Option<syn::Error>,
}

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(all) => all.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// `Err` with every collected error, or `Ok` if there were none.
    pub fn finish(self) -> syn::Result<()> {
        match self.combined {
            Some(all) => Err(all),
            None => Ok(()),
        }
    }
}
