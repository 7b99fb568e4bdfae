pub mod backbone;
