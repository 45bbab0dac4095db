//! Collects every `syn::Error` a stage finds so they are reported together.
//!
//! As serde's `Ctxt`, the collection must be checked: dropping one without calling
//! [`Errors::finish`] panics, so no stage can collect errors and then forget them.

#[derive(Default)]
pub struct Errors {
    combined: Option<syn::Error>,
    finished: bool,
}

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.combined {
            Some(all) => all.combine(error),
            None => self.combined = Some(error),
        }
    }

    /// `Err` with every collected error, or `Ok` if there were none.
    pub fn finish(mut self) -> syn::Result<()> {
        self.finished = true;
        match self.combined.take() {
            Some(all) => Err(all),
            None => Ok(()),
        }
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if !self.finished && !std::thread::panicking() {
            panic!("collected spec errors were dropped without `Errors::finish`");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_returns_every_error() {
        let mut errors = Errors::default();
        errors.push(syn::Error::new(proc_macro2::Span::call_site(), "first"));
        errors.push(syn::Error::new(proc_macro2::Span::call_site(), "second"));
        let all = errors.finish().unwrap_err();
        let messages: Vec<String> = all.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    #[should_panic(expected = "without `Errors::finish`")]
    fn an_unchecked_collection_panics() {
        let mut errors = Errors::default();
        errors.push(syn::Error::new(proc_macro2::Span::call_site(), "forgotten"));
    }
}
