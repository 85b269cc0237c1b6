//! String enums that survive values they do not know.
//!
//! Every enum that crosses the wire (run status, message type, finish reason, ...) must read a
//! value a newer server or provider introduced without failing the whole document. The
//! [`wire_enum!`](crate::wire_enum) macro generates such an enum: the known values as unit
//! variants plus `Other(String)`, which keeps the unknown spelling so it serialises back
//! unchanged.

/// Declares a string enum with an `Other(String)` catch-all and serde, `Display` and
/// `FromStr` implementations.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this version does not know, kept as it was spelled.
            Other(String),
        }

        impl $name {
            /// Returns the wire spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Other(text) => text.as_str(),
                }
            }

            /// Returns every known value's wire spelling.
            pub fn known_values() -> &'static [&'static str] {
                &[$( $text, )+]
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::convert::Infallible;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Ok(match text {
                    $( $text => $name::$variant, )+
                    other => $name::Other(other.to_owned()),
                })
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(match text.parse::<$name>() {
                    Ok(value) => value,
                    Err(never) => match never {},
                })
            }
        }
    };
}
