import { Module } from '@nestjs/common';
import { JwtModule } from '@nestjs/jwt';
import { JwtAuthGuard, UserIdGuard } from './auth.guards';
import { IssuedTokensService } from './issued-tokens.service';
import { RequestAuthenticator } from './request-authenticator';
import { OrganizationsService } from './organizations.service';
import { TokensService } from './tokens.service';
import { UsersService } from './users.service';

@Module({
  imports: [JwtModule.register({})],
  providers: [OrganizationsService, UsersService, TokensService, IssuedTokensService, RequestAuthenticator, JwtAuthGuard, UserIdGuard],
  exports: [OrganizationsService, UsersService, TokensService, IssuedTokensService, RequestAuthenticator, JwtAuthGuard, UserIdGuard],
})
export class AuthModule {}
