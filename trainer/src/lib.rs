//! The trainer's library: the work behind `leitwerk-trainer`'s sub-commands.

pub mod datagen;
