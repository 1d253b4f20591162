//! Profiles: named sets of defaults (`--profile dev-test|prod`) that sit between the environment
//! and the built-in defaults in config resolution.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    #[default]
    DevTest,
    Prod,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::DevTest => "dev-test",
            Profile::Prod => "prod",
        }
    }
}

impl FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dev-test" | "dev" | "test" => Ok(Profile::DevTest),
            "prod" | "production" => Ok(Profile::Prod),
            other => Err(format!(
                "unknown profile {other:?} (expected dev-test or prod)"
            )),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
